# Offline plan of the whole two-region example with mocked providers: both clusters
# plan (no unknown counts, no failed preconditions) and the mirror placeholder behaves.

mock_provider "aws" {
  alias = "primary"

  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"] }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
}

mock_provider "aws" {
  alias = "secondary"

  mock_data "aws_availability_zones" {
    defaults = { names = ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"] }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-west-2" }
  }
}

variables {
  strata_binary_url = "https://downloads.example.com/strata/strata-x86_64"
}

run "plans_two_independent_clusters" {
  command = plan

  assert {
    condition     = length(module.primary.broker_node_ids) == 3 && length(module.secondary.broker_node_ids) == 3
    error_message = "each region must get three brokers"
  }
  assert {
    condition     = module.network_primary.availability_zones == tolist(["us-east-1a", "us-east-1b", "us-east-1c"])
    error_message = "the primary must span three AZs of its region"
  }
  assert {
    condition     = module.network_secondary.availability_zones == tolist(["us-west-2a", "us-west-2b", "us-west-2c"])
    error_message = "the secondary must span three AZs of its region"
  }
  assert {
    condition     = output.mirror_link.status == "not implemented" && !output.mirror_link.enabled
    error_message = "the mirror link placeholder must be off by default"
  }
  assert {
    condition     = module.primary.client_security_protocol == "SASL_SSL" && module.secondary.client_security_protocol == "SASL_SSL"
    error_message = "both clusters must serve clients SASL_SSL by default"
  }
  assert {
    condition     = module.primary.private_ca_created && !module.secondary.private_ca_created
    error_message = "the secondary must use the primary's CA, not create its own"
  }
}

run "mirror_link_enabled_is_flagged" {
  command = plan

  variables {
    mirror_link = { enabled = true }
  }

  expect_failures = [check.mirror_link_not_yet_implemented]
}
