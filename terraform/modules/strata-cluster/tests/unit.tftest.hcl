# Unit tests of the module's decisions, offline: every AWS call is mocked.
# Run: terraform test (from the module directory, after terraform init).

mock_provider "aws" {
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "eu-west-1" }
  }
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.0.0.0/16" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::strata-test-segments" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/strata-test-broker-x" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/strata-test-broker-x" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/strata-test/0123456789abcdef"
      dns_name = "strata-test-0123.elb.eu-west-1.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/strata/0123456789abcdef" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
}

override_data {
  target = data.aws_subnet.this[0]
  values = { availability_zone = "eu-west-1a" }
}
override_data {
  target = data.aws_subnet.this[1]
  values = { availability_zone = "eu-west-1b" }
}
override_data {
  target = data.aws_subnet.this[2]
  values = { availability_zone = "eu-west-1c" }
}

variables {
  name               = "strata-test"
  vpc_id             = "vpc-0123"
  subnet_ids         = ["subnet-a", "subnet-b", "subnet-c"]
  broker_private_ips = ["10.0.1.10", "10.0.2.10", "10.0.3.10"]
  bucket_name        = "strata-test-segments"
  strata_binary_url  = "https://downloads.example.com/strata/strata-x86_64"
}

run "three_brokers_three_azs" {
  command = apply

  assert {
    condition     = length(aws_instance.broker) == 3 && length(aws_launch_template.broker) == 3
    error_message = "expected one instance and one launch template per broker"
  }
  assert {
    condition     = output.broker_node_ids == [1, 2, 3]
    error_message = "node ids must be 1..3 by position"
  }
  assert {
    condition     = aws_network_interface.broker[*].subnet_id == ["subnet-a", "subnet-b", "subnet-c"]
    error_message = "brokers must be spread one per subnet"
  }
  assert {
    condition     = output.broker_availability_zones == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    error_message = "brokers must land in three different AZs"
  }
  assert {
    condition     = aws_ebs_volume.data[*].availability_zone == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    error_message = "each data volume must be in its broker's AZ"
  }
}
