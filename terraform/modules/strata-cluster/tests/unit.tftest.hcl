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

run "quorum_and_rendered_config" {
  command = apply

  assert {
    condition     = output.controller_quorum_voters == "1@10.0.1.10:9093,2@10.0.2.10:9093,3@10.0.3.10:9093"
    error_message = "controller.quorum.voters must list every controller by node id and fixed IP"
  }
  assert {
    condition     = output.prometheus_scrape_targets == ["10.0.1.10:9644", "10.0.2.10:9644", "10.0.3.10:9644"]
    error_message = "scrape targets must be each broker's HTTP listener"
  }
  assert {
    condition     = output.bootstrap_servers == "strata-test-0123.elb.eu-west-1.amazonaws.com:9092"
    error_message = "bootstrap address must be the NLB on 9092"
  }
  assert {
    condition     = output.remote_storage_uri == "s3://strata-test-segments/strata"
    error_message = "remote.storage.uri must be s3://bucket/prefix"
  }
  # The exact config of broker 2: every key, nothing else.
  assert {
    condition     = output.broker_configs[1] == <<-TOML
      # /etc/strata/strata.toml: written by the strata-cluster Terraform module.
      # Edits are lost when the instance is replaced; change the module's variables instead.
      node.id = 2
      process.roles = ["broker","controller"]
      listeners = "PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093"
      advertised.listeners = "PLAINTEXT://10.0.2.10:9092"
      http.listener = "0.0.0.0:9644"
      controller.quorum.voters = "1@10.0.1.10:9093,2@10.0.2.10:9093,3@10.0.3.10:9093"
      log.dirs = "/var/lib/strata/data"
      remote.storage.uri = "s3://strata-test-segments/strata"
      remote.storage.s3.endpoint = ""
      remote.storage.s3.region = "eu-west-1"
      default.replication.factor = 3
      min.insync.replicas = 2
      num.partitions = 1
      TOML
    error_message = "rendered strata.toml of broker 2 differs: ${output.broker_configs[1]}"
  }
  assert {
    condition     = alltrue([for i, c in output.broker_configs : strcontains(c, "node.id = ${i + 1}\n")])
    error_message = "each broker's config must carry its own node.id"
  }
  # The user data embeds that config, the unit and the binary URL.
  assert {
    condition = alltrue([for i, lt in aws_launch_template.broker :
      strcontains(base64decode(lt.user_data), "cat > /etc/strata/strata.toml <<'STRATA_TOML_EOF'\n${output.broker_configs[i]}STRATA_TOML_EOF\n") &&
      strcontains(base64decode(lt.user_data), "ExecStart=/usr/local/bin/strata serve --config /etc/strata/strata.toml") &&
      strcontains(base64decode(lt.user_data), "https://downloads.example.com/strata/strata-x86_64") &&
      strcontains(base64decode(lt.user_data), "systemctl enable --now strata.service")
    ])
    error_message = "user data must write the broker's strata.toml, install the unit and the binary, and start strata.service"
  }
  assert {
    condition     = aws_launch_template.broker[0].metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required"
  }
  assert {
    condition     = aws_launch_template.broker[0].image_id == "ami-0123456789abcdef0"
    error_message = "default AMI must come from the Amazon Linux 2023 SSM parameter"
  }
}

run "bucket_locked_down" {
  command = apply

  assert {
    condition = (aws_s3_bucket_public_access_block.segments.block_public_acls &&
      aws_s3_bucket_public_access_block.segments.block_public_policy &&
      aws_s3_bucket_public_access_block.segments.ignore_public_acls &&
    aws_s3_bucket_public_access_block.segments.restrict_public_buckets)
    error_message = "all four public access blocks must be on"
  }
  assert {
    condition = (one(aws_s3_bucket_server_side_encryption_configuration.segments.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms" &&
    one(aws_s3_bucket_server_side_encryption_configuration.segments.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == aws_kms_key.this[0].arn)
    error_message = "default encryption must be SSE-KMS with the module's key"
  }
  assert {
    condition     = aws_kms_key.this[0].enable_key_rotation
    error_message = "the module's KMS key must rotate"
  }
  assert {
    condition     = aws_s3_bucket_versioning.segments.versioning_configuration[0].status == "Disabled"
    error_message = "versioning must be off"
  }
  assert {
    condition     = one(aws_s3_bucket_lifecycle_configuration.segments.rule).abort_incomplete_multipart_upload[0].days_after_initiation == 2
    error_message = "incomplete multipart uploads must be aborted"
  }
  assert {
    condition     = alltrue([for v in aws_ebs_volume.data : v.encrypted && v.kms_key_id == aws_kms_key.this[0].arn])
    error_message = "data volumes must be encrypted with the cluster key"
  }
}

run "iam_and_bucket_policy_scoped_to_prefix" {
  command = apply

  variables {
    remote_storage_prefix = "prod/segments"
  }

  assert {
    condition     = jsondecode(aws_iam_role_policy.broker.policy).Statement[0].Resource == "arn:aws:s3:::strata-test-segments/prod/segments/*"
    error_message = "object access must be limited to the prefix"
  }
  assert {
    condition = (jsondecode(aws_iam_role_policy.broker.policy).Statement[1].Action == "s3:ListBucket" &&
      jsondecode(aws_iam_role_policy.broker.policy).Statement[1].Resource == "arn:aws:s3:::strata-test-segments" &&
    jsondecode(aws_iam_role_policy.broker.policy).Statement[1].Condition.StringLike["s3:prefix"] == ["prod/segments", "prod/segments/*"])
    error_message = "listing must be limited to the prefix"
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.broker.policy).Statement :
      alltrue([for r in flatten([s.Resource]) : r != "*" && !endswith(r, ":::strata-test-segments/*")])
    ])
    error_message = "no statement may grant the whole bucket or '*'"
  }
  assert {
    condition     = length(jsondecode(aws_iam_role_policy.broker.policy).Statement) == 3
    error_message = "an https binary URL must not add S3 read access"
  }
  assert {
    condition = (jsondecode(aws_s3_bucket_policy.segments.policy).Statement[1].Principal.AWS == aws_iam_role.broker.arn &&
      jsondecode(aws_s3_bucket_policy.segments.policy).Statement[1].Effect == "Deny" &&
    jsondecode(aws_s3_bucket_policy.segments.policy).Statement[1].NotResource == "arn:aws:s3:::strata-test-segments/prod/segments/*")
    error_message = "the bucket policy must deny the broker role any object outside its prefix"
  }
  assert {
    condition     = jsondecode(aws_s3_bucket_policy.segments.policy).Statement[0].Condition.Bool["aws:SecureTransport"] == "false"
    error_message = "the bucket policy must deny plain HTTP"
  }
  assert {
    condition     = strcontains(output.broker_configs[0], "remote.storage.uri = \"s3://strata-test-segments/prod/segments\"\n")
    error_message = "the config must point at the same prefix the policy allows"
  }
}

run "binary_from_s3_grants_exactly_that_object" {
  command = apply

  variables {
    strata_binary_url = "s3://artifacts-bucket/strata/v0.1.0/strata"
  }

  assert {
    condition = (jsondecode(aws_iam_role_policy.broker.policy).Statement[3].Action == "s3:GetObject" &&
    jsondecode(aws_iam_role_policy.broker.policy).Statement[3].Resource == "arn:aws:s3:::artifacts-bucket/strata/v0.1.0/strata")
    error_message = "an s3:// binary must be readable, and only that object"
  }
  assert {
    condition     = strcontains(base64decode(aws_launch_template.broker[0].user_data), "aws s3 cp")
    error_message = "user data must fetch an s3:// binary with the AWS CLI"
  }
}

run "five_brokers_three_controllers" {
  command = apply

  variables {
    broker_count       = 5
    broker_private_ips = ["10.0.1.10", "10.0.2.10", "10.0.3.10", "10.0.1.11", "10.0.2.11"]
  }

  assert {
    condition     = output.broker_node_ids == [1, 2, 3, 4, 5]
    error_message = "node ids must be 1..5"
  }
  assert {
    condition     = aws_network_interface.broker[*].subnet_id == ["subnet-a", "subnet-b", "subnet-c", "subnet-a", "subnet-b"]
    error_message = "brokers must be placed round-robin over the subnets"
  }
  assert {
    condition     = output.controller_quorum_voters == "1@10.0.1.10:9093,2@10.0.2.10:9093,3@10.0.3.10:9093"
    error_message = "only the first three brokers are voters"
  }
  assert {
    condition = (strcontains(output.broker_configs[4], "process.roles = [\"broker\"]\n") &&
    strcontains(output.broker_configs[4], "listeners = \"PLAINTEXT://0.0.0.0:9092\"\n"))
    error_message = "broker-only nodes must not run the controller role nor listen on 9093"
  }
  assert {
    condition     = strcontains(output.broker_configs[2], "process.roles = [\"broker\",\"controller\"]\n")
    error_message = "the first three nodes must run both roles"
  }
  assert {
    condition     = length(aws_lb_target_group_attachment.kafka) == 5
    error_message = "every broker must be behind the bootstrap NLB"
  }
}

run "security_group_controller_port_only_within_group" {
  command = apply

  variables {
    client_cidr_blocks = ["192.168.0.0/16"]
  }

  assert {
    condition = (aws_vpc_security_group_ingress_rule.controller_self.from_port == 9093 &&
    aws_vpc_security_group_ingress_rule.controller_self.referenced_security_group_id == aws_security_group.broker.id)
    error_message = "9093 must be open to the group itself"
  }
  assert {
    condition = alltrue([for r in concat(values(aws_vpc_security_group_ingress_rule.kafka_clients), values(aws_vpc_security_group_ingress_rule.http_metrics), [aws_vpc_security_group_ingress_rule.kafka_vpc, aws_vpc_security_group_ingress_rule.http_vpc]) :
    r.from_port != 9093 && r.to_port != 9093 && r.cidr_ipv4 != null])
    error_message = "no CIDR rule may open the controller port"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.kafka_vpc.cidr_ipv4 == "10.0.0.0/16" && keys(aws_vpc_security_group_ingress_rule.kafka_clients) == ["192.168.0.0/16"]
    error_message = "9092 must be open to the VPC and the client CIDRs"
  }
  assert {
    condition     = aws_lb.bootstrap.internal && aws_lb.bootstrap.load_balancer_type == "network"
    error_message = "the bootstrap load balancer must be an internal NLB by default"
  }
  assert {
    condition     = aws_lb_listener.kafka.port == 9092 && aws_lb_target_group.kafka.health_check[0].path == "/ready"
    error_message = "the NLB must forward 9092 and check /ready"
  }
}

run "existing_kms_key" {
  command = apply

  variables {
    kms_key_arn = "arn:aws:kms:eu-west-1:123456789012:key/byok"
  }

  assert {
    condition     = length(aws_kms_key.this) == 0
    error_message = "no key may be created when one is given"
  }
  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.segments.rule).apply_server_side_encryption_by_default[0].kms_master_key_id == "arn:aws:kms:eu-west-1:123456789012:key/byok"
    error_message = "the given key must encrypt the bucket"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.broker.policy).Statement[2].Resource == "arn:aws:kms:eu-west-1:123456789012:key/byok"
    error_message = "the role may use only the given key"
  }
}

run "rejects_same_az_subnets" {
  command = plan

  override_data {
    target = data.aws_subnet.this[2]
    values = { availability_zone = "eu-west-1a" }
  }

  expect_failures = [aws_ebs_volume.data]
}

run "rejects_min_isr_above_replication_factor" {
  command = plan

  variables {
    default_replication_factor = 2
    min_insync_replicas        = 3
  }

  expect_failures = [aws_ebs_volume.data]
}

run "rejects_even_controller_count" {
  command = plan

  variables {
    controller_count = 2
  }

  expect_failures = [var.controller_count]
}

run "rejects_log_dirs_outside_data_volume" {
  command = plan

  variables {
    log_dirs = "/var/lib/strata/a,/srv/b"
  }

  expect_failures = [var.log_dirs]
}
