# One Strata cluster: three brokers (each also a Raft controller) in three AZs of one
# region, tiering sealed segments to an S3 bucket, clients on SASL_SSL. Creates its own VPC.

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      "strata:example" = "single-region"
    }
  }
}

module "network" {
  source = "../../modules/strata-network"

  name       = var.name
  cidr_block = var.vpc_cidr
  az_count   = 3
}

module "strata" {
  source = "../../modules/strata-cluster"

  name                 = var.name
  vpc_id               = module.network.vpc_id
  subnet_ids           = module.network.private_subnet_ids
  broker_count         = 3
  controller_count     = 3
  instance_type        = var.instance_type
  strata_binary_url    = var.strata_binary_url
  strata_binary_sha256 = var.strata_binary_sha256
  client_cidr_blocks   = var.client_cidr_blocks
  metrics_cidr_blocks  = var.metrics_cidr_blocks
  force_destroy_bucket = var.force_destroy_bucket

  # Closed by default: SASL_SSL (SCRAM-SHA-512) for clients on 9092, mutual TLS between
  # brokers and controllers, certificates from a private CA the module creates, the first
  # admin's password generated into Secrets Manager. `terraform output client_properties`.
  admin_username                    = var.admin_username
  admin_secret_recovery_window_days = var.admin_secret_recovery_window_days

  default_replication_factor = 3
  min_insync_replicas        = 2
  num_partitions             = 3
}
