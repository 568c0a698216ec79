# Two Strata clusters in two regions, each with its own VPC, segment bucket and admin
# secret, both closed by default (SASL_SSL clients, mutual TLS inside, certificates from
# one private CA in the primary region).
# Today they are independent. When Strata's mirror links land, the secondary cluster
# will mirror topics from the primary: see var.mirror_link (FUTURE) below.

provider "aws" {
  alias  = "primary"
  region = var.primary_region

  default_tags {
    tags = { "strata:example" = "two-region-mirror", "strata:role" = "primary" }
  }
}

provider "aws" {
  alias  = "secondary"
  region = var.secondary_region

  default_tags {
    tags = { "strata:example" = "two-region-mirror", "strata:role" = "secondary" }
  }
}

module "network_primary" {
  source    = "../../modules/strata-network"
  providers = { aws = aws.primary }

  name       = "${var.name}-primary"
  cidr_block = var.primary_vpc_cidr
}

module "network_secondary" {
  source    = "../../modules/strata-network"
  providers = { aws = aws.secondary }

  name       = "${var.name}-secondary"
  cidr_block = var.secondary_vpc_cidr
}

module "primary" {
  source    = "../../modules/strata-cluster"
  providers = { aws = aws.primary }

  name              = "${var.name}-primary"
  vpc_id            = module.network_primary.vpc_id
  subnet_ids        = module.network_primary.private_subnet_ids
  broker_count      = var.brokers_per_cluster
  instance_type     = var.instance_type
  strata_binary_url = var.strata_binary_url
}

module "secondary" {
  source    = "../../modules/strata-cluster"
  providers = { aws = aws.secondary }

  name              = "${var.name}-secondary"
  vpc_id            = module.network_secondary.vpc_id
  subnet_ids        = module.network_secondary.private_subnet_ids
  broker_count      = var.brokers_per_cluster
  instance_type     = var.instance_type
  strata_binary_url = var.strata_binary_url

  # One trust anchor for both clusters: the secondary's brokers get their certificates
  # from the primary's private CA (across regions), so a client, and later the mirror
  # link, trusts both clusters with one CA certificate, and only one CA is billed.
  create_private_ca = false
  private_ca_arn    = module.primary.private_ca_arn

  # The mirror will fetch from the primary's brokers over the inter-region link
  # (VPC peering or Transit Gateway, not created here); let the primary's range in.
  # It will connect with SASL_SSL like any client (the mirror's own SCRAM user).
  client_cidr_blocks = var.mirror_link.enabled ? [var.primary_vpc_cidr] : []
}

# FUTURE (mirror links): nothing consumes var.mirror_link yet beyond the security group
# rule above. Once Strata ships mirror links (a metadata record created through the
# admin API), this example will create the link from the secondary to the primary.
check "mirror_link_not_yet_implemented" {
  assert {
    condition     = !var.mirror_link.enabled
    error_message = "var.mirror_link.enabled is true, but mirror links are not implemented yet: the two clusters are deployed without a link between them."
  }
}
