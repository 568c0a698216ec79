# Two Strata clusters in two regions, each with its own VPC, segment bucket and admin
# secret, both closed by default (SASL_SSL clients, mutual TLS inside, certificates from
# one private CA in the primary region).
# With var.mirror_link.enabled (the default), the secondary cluster mirrors the primary's
# topics through a mirror link over a VPC peering (see mirror.tf).

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

  # The link's user: a SCRAM credential made at the primary's first format, from a secret
  # in the primary's region (mirror.tf), and the secondary's address range on 9092.
  extra_scram_users  = local.mirror_enabled ? [{ name = var.mirror_link.username, secret_arn = aws_secretsmanager_secret.mirror[0].arn }] : []
  extra_super_users  = local.mirror_enabled ? ["User:${var.mirror_link.username}"] : []
  client_cidr_blocks = local.mirror_enabled ? [var.secondary_vpc_cidr] : []
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

  # The link: every secondary broker writes the mirror user's password (the secret's
  # replica in this region) to a file at boot; the first one creates the link.
  mirror_links = local.mirror_enabled ? [{
    name                       = var.mirror_link.name
    source_bootstrap_servers   = local.primary_broker_servers
    source_sasl_username       = var.mirror_link.username
    source_password_secret_arn = local.mirror_secret_replica_arn
    include                    = var.mirror_link.include
    exclude                    = var.mirror_link.exclude
    sync_configs               = var.mirror_link.sync_configs
    sync_group_offsets         = var.mirror_link.sync_group_offsets
    group_include              = var.mirror_link.group_include
    interval_ms                = var.mirror_link.interval_ms
  }] : []
}
