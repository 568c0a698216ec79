# Offline plan of the single-region example with a mocked provider (the full apply
# runs against moto_server in scripts/test-terraform.sh).

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
}

variables {
  strata_binary_url = "https://downloads.example.com/strata/strata-x86_64"
}

run "plans_three_brokers_in_three_azs" {
  command = plan

  assert {
    condition     = module.strata.broker_node_ids == [1, 2, 3]
    error_message = "three brokers with node ids 1..3"
  }
  assert {
    condition     = module.network.availability_zones == tolist(["eu-west-1a", "eu-west-1b", "eu-west-1c"])
    error_message = "one private subnet per AZ"
  }
}
