# Offline plan of the whole two-region example with mocked providers: both clusters
# plan (no unknown counts, no failed preconditions), and the mirror link's pieces exist
# when it is enabled (the default) and are absent when it is not.

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
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.41.0.0/16" }
  }
  mock_resource "aws_vpc" {
    defaults = { cidr_block = "10.41.0.0/16" }
  }
  mock_resource "aws_network_interface" {
    defaults = { private_ip = "10.41.0.10" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::strata-segments-us-east-1" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/strata-broker-us-east-1" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/strata-broker-us-east-1" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/strata/0123456789abcdef"
      dns_name = "strata-0123.elb.us-east-1.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/strata/0123456789abcdef" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_acmpca_certificate_authority" {
    defaults = { arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_acmpca_certificate_authority_certificate" {
    defaults = { certificate_authority_arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  # A known "random" password, so the tests can look for it where it must not be.
  mock_data "aws_secretsmanager_random_password" {
    # checkov:skip=CKV_SECRET_6:A fixed test value standing in for the generated passwords, so the tests can look for it.
    defaults = { random_password = "generatedpasswordforthetestsonly" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:strata-primary/strata/x-AbCdEf" }
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
  mock_data "aws_vpc" {
    defaults = { cidr_block = "10.42.0.0/16" }
  }
  mock_resource "aws_vpc" {
    defaults = { cidr_block = "10.42.0.0/16" }
  }
  mock_resource "aws_network_interface" {
    defaults = { private_ip = "10.42.0.10" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::strata-segments-us-west-2" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/strata-broker-us-west-2" }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/strata-broker-us-west-2" }
  }
  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/net/strata/0123456789abcdef"
      dns_name = "strata-0123.elb.us-west-2.amazonaws.com"
    }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/strata/0123456789abcdef" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_acmpca_certificate_authority" {
    defaults = { arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_acmpca_certificate_authority_certificate" {
    defaults = { certificate_authority_arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  # A known "random" password, so the tests can look for it where it must not be.
  mock_data "aws_secretsmanager_random_password" {
    # checkov:skip=CKV_SECRET_6:A fixed test value standing in for the generated passwords, so the tests can look for it.
    defaults = { random_password = "generatedpasswordforthetestsonly" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:strata-secondary/strata/x-AbCdEf" }
  }
}

variables {
  strata_binary_url = "https://downloads.example.com/strata/strata-x86_64"
}

run "plans_both_clusters" {
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
    condition     = module.primary.client_security_protocol == "SASL_SSL" && module.secondary.client_security_protocol == "SASL_SSL"
    error_message = "both clusters must serve clients SASL_SSL by default"
  }
  assert {
    condition     = module.primary.private_ca_created && !module.secondary.private_ca_created
    error_message = "the secondary must use the primary's CA, not create its own"
  }
}

run "mirror_link_enabled_by_default" {
  command = apply

  assert {
    condition = (length(aws_secretsmanager_secret.mirror) == 1 && length(aws_secretsmanager_secret_version.mirror) == 1 &&
      length(aws_vpc_peering_connection.mirror) == 1 && length(aws_vpc_peering_connection_accepter.mirror) == 1 &&
      length(aws_route.secondary_to_primary) == 1 && length(aws_route.primary_to_secondary) == 1 &&
    length(aws_vpc_security_group_egress_rule.secondary_to_primary_kafka) == 1)
    error_message = "the link needs its secret, the peering, routes both ways and the secondary's way out to 9092"
  }
  assert {
    condition = (aws_vpc_peering_connection.mirror[0].peer_region == "us-east-1" &&
      aws_route.secondary_to_primary[0].destination_cidr_block == "10.41.0.0/16" &&
      aws_route.primary_to_secondary[0].destination_cidr_block == "10.42.0.0/16" &&
      aws_vpc_security_group_egress_rule.secondary_to_primary_kafka[0].cidr_ipv4 == "10.41.0.0/16" &&
    aws_vpc_security_group_egress_rule.secondary_to_primary_kafka[0].from_port == 9092)
    error_message = "the secondary must reach the primary's range on 9092 through the peering"
  }
  # The password: generated, written write-only, replicated to the secondary's region.
  assert {
    condition = (aws_secretsmanager_secret_version.mirror[0].secret_string_wo == null &&
      aws_secretsmanager_secret_version.mirror[0].secret_string == null &&
      [for r in aws_secretsmanager_secret.mirror[0].replica : r.region] == ["us-west-2"] &&
    output.mirror_link.password_secret_replica_arn == "arn:aws:secretsmanager:us-west-2:123456789012:secret:strata-primary/strata/x-AbCdEf")
    error_message = "the link's password must be written write-only and replicated to the secondary's region"
  }
  # The primary makes the link's user at format and lets the secondary in.
  assert {
    condition = (strcontains(module.primary.broker_user_data[0], "EXTRA_SCRAM+=(--add-scram \"SCRAM-SHA-512=[name=mirror,password=$USER_PASSWORD]\")") &&
      strcontains(module.primary.broker_user_data[0], "read_secret \"arn:aws:secretsmanager:us-east-1:123456789012:secret:strata-primary/strata/x-AbCdEf\"") &&
    module.primary.super_users == "User:admin;User:CN=strata-primary-broker;User:mirror")
    error_message = "the primary must create the mirror user from its secret at format"
  }
  # Every secondary broker writes the password file from the replica; broker 1 creates the link.
  assert {
    condition = alltrue([for u in module.secondary.broker_user_data :
      strcontains(u, "read_secret \"arn:aws:secretsmanager:us-west-2:123456789012:secret:strata-primary/strata/x-AbCdEf\" >\"/etc/strata/mirror/primary-to-secondary.password.new\"")
    ])
    error_message = "every secondary broker must write the link's password file from the replica in its region"
  }
  assert {
    condition = (strcontains(module.secondary.broker_user_data[0], "ensure_link 'primary-to-secondary' '--source-bootstrap-servers' '${output.mirror_link.source_bootstrap_servers}' '--source-security-protocol' 'SASL_SSL' '--source-ssl-truststore-location' '/etc/strata/tls/ca.pem' '--source-sasl-mechanism' 'SCRAM-SHA-512' '--source-sasl-username' 'mirror' '--source-password-file' '/etc/strata/mirror/primary-to-secondary.password' '--include' '.*' '--sync-configs' '--interval-ms' '5000' || FAILED=1") &&
      strcontains(module.secondary.broker_user_data[0], "systemctl start --no-block strata-mirror-links.service") &&
    alltrue([for u in slice(module.secondary.broker_user_data, 1, 3) : !strcontains(u, "strata-mirror-links")]))
    error_message = "the secondary's first broker alone must create the link, with the variable's settings"
  }
  # No password in clear anywhere it is rendered.
  assert {
    condition = alltrue([for u in concat(module.primary.broker_user_data, module.secondary.broker_user_data) :
      !strcontains(u, "generatedpasswordforthetestsonly") && !strcontains(u, "-----BEGIN") && !strcontains(u, "PRIVATE KEY")
    ])
    error_message = "no user data may hold a password or key material"
  }
  assert {
    condition     = !strcontains(jsonencode(output.mirror_link), "generatedpasswordforthetestsonly")
    error_message = "the mirror_link output must not carry the password"
  }
}

run "mirror_link_disabled" {
  command = apply

  variables {
    mirror_link = { enabled = false }
  }

  assert {
    condition = (length(aws_secretsmanager_secret.mirror) == 0 && length(aws_vpc_peering_connection.mirror) == 0 &&
      length(aws_route.secondary_to_primary) == 0 && length(aws_route.primary_to_secondary) == 0 &&
      length(aws_vpc_security_group_egress_rule.secondary_to_primary_kafka) == 0 &&
    output.mirror_link == null)
    error_message = "a disabled link must create nothing"
  }
  assert {
    condition = (alltrue([for u in concat(module.primary.broker_user_data, module.secondary.broker_user_data) :
      !strcontains(u, "mirror") && !strcontains(u, "EXTRA_SCRAM+=")]) &&
    module.primary.super_users == "User:admin;User:CN=strata-primary-broker")
    error_message = "without a link, no broker may carry mirror pieces and the primary no extra user"
  }
}

run "group_offset_sync_is_passed_to_the_link" {
  command = apply

  variables {
    mirror_link = { sync_group_offsets = true, group_include = "billing-.*" }
  }

  assert {
    condition     = strcontains(module.secondary.broker_user_data[0], "'--sync-group-offsets' '--group-include' 'billing-.*'")
    error_message = "the link must still be created with the requested group offset settings"
  }
}
