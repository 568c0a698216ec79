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
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.40.0.0/16" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  mock_resource "aws_vpc" {
    defaults = { cidr_block = "10.40.0.0/16" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::strata-demo-segments", bucket = "strata-demo-segments" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/strata-demo-broker-x" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/strata-demo-broker-x" }
  }
  mock_resource "aws_network_interface" {
    defaults = { private_ip = "10.40.1.10" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/strata-demo/0123456789abcdef"
      dns_name = "strata-demo-0123.elb.eu-west-1.amazonaws.com"
    }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/strata/0123456789abcdef" }
  }
  mock_resource "aws_acmpca_certificate_authority" {
    defaults = { arn = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-demo/strata/admin-AbCdEf" }
  }
  mock_resource "aws_acmpca_certificate_authority_certificate" {
    defaults = { certificate_authority_arn = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_data "aws_secretsmanager_random_password" {
    # checkov:skip=CKV_SECRET_6:A fixed test value standing in for the generated password, so the tests can look for it.
    defaults = { random_password = "generatedpasswordforthetestsonly" }
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

# The example's defaults are the secure ones: an apply with mocked AWS renders the client
# snippet and the broker configs.
run "secure_by_default" {
  command = apply

  assert {
    condition     = strcontains(output.client_properties, "\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n")
    error_message = "clients must be told SASL_SSL with SCRAM-SHA-512"
  }
  assert {
    condition     = strcontains(output.client_properties, "--secret-id ${output.admin_password_secret_arn} ") && strcontains(output.client_properties, "ssl.truststore.location=strata-ca.pem")
    error_message = "the client snippet must say where the password secret and the CA certificate are"
  }
  assert {
    condition = alltrue([for c in output.broker_configs :
      strcontains(c, "\nlisteners = \"SASL_SSL://0.0.0.0:9092,INTERNAL://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093\"\n") &&
      strcontains(c, "\nlistener.security.protocol.map = \"SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL\"\n") &&
      strcontains(c, "\nallow.everyone.if.no.acl.found = false\n")
    ])
    error_message = "every broker must be closed by default"
  }
}
