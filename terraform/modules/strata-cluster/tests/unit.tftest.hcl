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
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf" }
  }
  mock_resource "aws_acmpca_certificate_authority" {
    defaults = { arn = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_acmpca_certificate_authority_certificate" {
    defaults = { certificate_authority_arn = "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_acmpca_certificate" {
    defaults = { certificate = "-----BEGIN CERTIFICATE-----\nMOCKROOTCA\n-----END CERTIFICATE-----\n" }
  }
  # A known "random" password, so the tests can look for it where it must not be.
  mock_data "aws_secretsmanager_random_password" {
    # checkov:skip=CKV_SECRET_6:A fixed test value standing in for the generated password, so the tests can look for it.
    defaults = { random_password = "generatedpasswordforthetestsonly" }
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
      listeners = "SASL_SSL://0.0.0.0:9092,INTERNAL://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093"
      advertised.listeners = "SASL_SSL://10.0.2.10:9092,INTERNAL://10.0.2.10:9094"
      listener.security.protocol.map = "SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
      inter.broker.listener.name = "INTERNAL"
      controller.listener.names = "CONTROLLER"
      ssl.certificate.location = "/etc/strata/tls/broker.pem"
      ssl.key.location = "/etc/strata/tls/broker.key"
      ssl.truststore.location = "/etc/strata/tls/ca.pem"
      listener.name.internal.ssl.client.auth = "required"
      listener.name.controller.ssl.client.auth = "required"
      sasl.enabled.mechanisms = "SCRAM-SHA-512"
      super.users = "User:admin;User:CN=strata-test-broker"
      allow.everyone.if.no.acl.found = false
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
      strcontains(output.broker_configs[4], "\nlisteners = \"SASL_SSL://0.0.0.0:9092,INTERNAL://0.0.0.0:9094\"\n") &&
    !strcontains(output.broker_configs[4], "listener.name.controller."))
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
  assert {
    condition = (aws_vpc_security_group_ingress_rule.internal_self.from_port == 9094 &&
    aws_vpc_security_group_ingress_rule.internal_self.referenced_security_group_id == aws_security_group.broker.id)
    error_message = "the INTERNAL listener 9094 must be open to the group itself only"
  }
  assert {
    condition = alltrue([for r in concat(values(aws_vpc_security_group_ingress_rule.kafka_clients), values(aws_vpc_security_group_ingress_rule.http_metrics), [aws_vpc_security_group_ingress_rule.kafka_vpc, aws_vpc_security_group_ingress_rule.http_vpc]) :
    r.from_port != 9094 && r.to_port != 9094])
    error_message = "no CIDR rule may open the INTERNAL port"
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

# --- security: closed by default ----------------------------------------------------

run "no_plaintext_listener_by_default" {
  command = apply

  variables {
    broker_count       = 4
    broker_private_ips = ["10.0.1.10", "10.0.2.10", "10.0.3.10", "10.0.1.11"]
  }

  # Parse each rendered config: every name in `listeners` must map to a TLS protocol in
  # `listener.security.protocol.map` (a name missing from the map counts as PLAINTEXT).
  assert {
    condition = alltrue([for c in output.broker_configs : alltrue([
      for l in split(",", regex("\nlisteners = \"([^\"]+)\"\n", c)[0]) :
      contains(["SSL", "SASL_SSL"], lookup(
        { for p in split(",", regex("\nlistener.security.protocol.map = \"([^\"]+)\"\n", c)[0]) : split(":", p)[0] => split(":", p)[1] },
        split("://", l)[0],
        "PLAINTEXT",
      ))
    ])])
    error_message = "every listener of every broker must be SSL or SASL_SSL by default"
  }
  assert {
    condition = alltrue([for c in output.broker_configs :
      strcontains(c, "\nlisteners = \"SASL_SSL://0.0.0.0:9092,") &&
      strcontains(c, "\nadvertised.listeners = \"SASL_SSL://") &&
      !strcontains(c, "PLAINTEXT")
    ])
    error_message = "clients must be served SASL_SSL on 9092, and nothing may mention PLAINTEXT"
  }
  assert {
    condition = alltrue([for i, c in output.broker_configs :
      strcontains(c, "\ninter.broker.listener.name = \"INTERNAL\"\n") &&
      strcontains(c, "\nlistener.name.internal.ssl.client.auth = \"required\"\n") &&
      strcontains(c, "\ncontroller.listener.names = \"CONTROLLER\"\n") &&
      (i >= 3 || strcontains(c, "\nlistener.name.controller.ssl.client.auth = \"required\"\n")) &&
      strcontains(c, "\nallow.everyone.if.no.acl.found = false\n") &&
      strcontains(c, "\nsuper.users = \"User:admin;User:CN=strata-test-broker\"\n") &&
      strcontains(c, "\nsasl.enabled.mechanisms = \"SCRAM-SHA-512\"\n")
    ])
    error_message = "brokers and controllers must talk mutual TLS; ACLs closed; the admin and the brokers are the super users"
  }
  assert {
    condition     = output.client_security_protocol == "SASL_SSL" && strcontains(output.client_properties, "\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n")
    error_message = "the client snippet must say SASL_SSL with SCRAM-SHA-512"
  }
  assert {
    condition = (strcontains(output.client_properties, "--secret-id arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf ") &&
      strcontains(output.client_properties, "ssl.truststore.location=strata-ca.pem") &&
      strcontains(output.client_properties, "aws acm-pca get-certificate-authority-certificate --region eu-west-1 --certificate-authority-arn arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555 ") &&
    output.ca_certificate_pem == "-----BEGIN CERTIFICATE-----\nMOCKROOTCA\n-----END CERTIFICATE-----\n")
    error_message = "the client snippet must say where the password secret and the CA certificate are"
  }
}

run "user_data_holds_no_secret_generated_password" {
  command = apply

  # The user data names the secret and the CA, and makes the key on the instance.
  assert {
    condition = alltrue([for i, lt in aws_launch_template.broker :
      strcontains(base64decode(lt.user_data), "--secret-id \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf\"") &&
      strcontains(base64decode(lt.user_data), "--add-scram \"SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]\"") &&
      strcontains(base64decode(lt.user_data), "CA_ARN=\"arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555\"") &&
      strcontains(base64decode(lt.user_data), "-subj \"/CN=strata-test-broker\" -addext \"subjectAltName=IP:${["10.0.1.10", "10.0.2.10", "10.0.3.10"][i]},DNS:strata-test-0123.elb.eu-west-1.amazonaws.com\"") &&
      strcontains(base64decode(lt.user_data), "install -o strata -g strata -m 0600 \"$WORK/broker.key\" \"/etc/strata/tls/broker.key\"")
    ])
    error_message = "user data must fetch the admin password from the secret and a certificate from the CA, making its own key"
  }
  # ... and holds neither the password nor any PEM material.
  assert {
    condition = alltrue([for lt in aws_launch_template.broker :
      !strcontains(base64decode(lt.user_data), "generatedpasswordforthetestsonly") &&
      !strcontains(base64decode(lt.user_data), "-----BEGIN") &&
      !strcontains(base64decode(lt.user_data), "PRIVATE KEY")
    ])
    error_message = "the user data must not contain the admin password or key/certificate material"
  }
  assert {
    condition = (!strcontains(output.client_properties, "generatedpasswordforthetestsonly") &&
    alltrue([for c in output.broker_configs : !strcontains(c, "generatedpasswordforthetestsonly")]))
    error_message = "no output may carry the admin password"
  }
  # The password reaches the secret through a write-only attribute: not in the state.
  assert {
    condition = (aws_secretsmanager_secret_version.admin.secret_string_wo == null &&
      aws_secretsmanager_secret_version.admin.secret_string == null &&
    aws_secretsmanager_secret_version.admin.secret_string_wo_version == 1)
    error_message = "the secret's value must be written write-only (nothing in the state)"
  }
  assert {
    condition     = aws_secretsmanager_secret.admin.kms_key_id == aws_kms_key.this[0].arn
    error_message = "the admin secret must be encrypted with the cluster key"
  }
  # Only controllers bootstrap the admin credential.
  assert {
    condition = alltrue([for i, lt in aws_launch_template.broker :
    strcontains(base64decode(lt.user_data), "/usr/local/bin/strata format --cluster-id \"${md5("123456789012/eu-west-1/strata-test/strata-test-segments")}\" --config /etc/strata/strata.toml")])
    error_message = "every broker must be formatted with the same cluster id"
  }
}

run "user_data_holds_no_secret_supplied_password" {
  command = apply

  variables {
    broker_count           = 4
    broker_private_ips     = ["10.0.1.10", "10.0.2.10", "10.0.3.10", "10.0.1.11"]
    admin_username         = "ops-admin"
    admin_password         = "Supplied-Passw0rd.For~Tests_77"
    admin_password_version = 3
  }

  assert {
    condition = alltrue([for lt in aws_launch_template.broker :
      !strcontains(base64decode(lt.user_data), "Supplied-Passw0rd.For~Tests_77") &&
      !strcontains(base64decode(lt.user_data), "generatedpasswordforthetestsonly")
    ])
    error_message = "the user data must not contain the supplied admin password"
  }
  assert {
    condition     = !strcontains(output.client_properties, "Supplied-Passw0rd.For~Tests_77") && strcontains(output.client_properties, "username=\"ops-admin\" password=\"<the secret's value>\"")
    error_message = "the client snippet names the user and a placeholder, never the password"
  }
  assert {
    condition     = aws_secretsmanager_secret_version.admin.secret_string_wo == null && aws_secretsmanager_secret_version.admin.secret_string_wo_version == 3
    error_message = "the supplied password must be written write-only, at the given version"
  }
  assert {
    condition = (strcontains(base64decode(aws_launch_template.broker[0].user_data), "--add-scram \"SCRAM-SHA-512=[name=ops-admin,password=$ADMIN_PASSWORD]\"") &&
    !strcontains(base64decode(aws_launch_template.broker[3].user_data), "secretsmanager"))
    error_message = "controllers bootstrap the admin; a broker-only node does not even read the secret"
  }
  assert {
    condition     = strcontains(output.broker_configs[0], "\nsuper.users = \"User:ops-admin;User:CN=strata-test-broker\"\n")
    error_message = "the admin in super.users must follow admin_username"
  }
}

run "iam_reads_only_the_admin_secret" {
  command = apply

  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.security.policy).Statement : s if length([for a in flatten([s.Action]) : a if startswith(a, "secretsmanager:")]) > 0] == [{
      Sid      = "ReadAdminSecret"
      Effect   = "Allow"
      Action   = "secretsmanager:GetSecretValue"
      Resource = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf"
    }]
    error_message = "exactly one statement may touch Secrets Manager: GetSecretValue on the admin secret alone"
  }
  assert {
    condition     = length([for s in jsondecode(aws_iam_role_policy.broker.policy).Statement : s if length([for a in flatten([s.Action]) : a if !startswith(a, "s3:") && !startswith(a, "kms:")]) > 0]) == 0
    error_message = "the tiered-storage policy must not grant anything but S3 and KMS"
  }
  assert {
    condition = alltrue([for s in jsondecode(aws_iam_role_policy.security.policy).Statement :
      s.Effect == "Allow" && alltrue([for r in flatten([s.Resource]) : r != "*" && !strcontains(r, "*")]) &&
      alltrue([for a in flatten([s.Action]) : !strcontains(a, "*")])
    ])
    error_message = "no wildcard resource or action in the security policy"
  }
  assert {
    condition = (jsondecode(aws_iam_role_policy.security.policy).Statement[1].Action == "kms:Decrypt" &&
      jsondecode(aws_iam_role_policy.security.policy).Statement[1].Condition.StringEquals["kms:ViaService"] == "secretsmanager.eu-west-1.amazonaws.com" &&
    jsondecode(aws_iam_role_policy.security.policy).Statement[1].Condition.StringEquals["kms:EncryptionContext:SecretARN"] == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf")
    error_message = "the key may decrypt only the admin secret, only through Secrets Manager"
  }
  assert {
    condition = (jsondecode(aws_iam_role_policy.security.policy).Statement[2].Action == "acm-pca:IssueCertificate" &&
      jsondecode(aws_iam_role_policy.security.policy).Statement[2].Resource == "arn:aws:acm-pca:eu-west-1:123456789012:certificate-authority/11111111-2222-3333-4444-555555555555" &&
    jsondecode(aws_iam_role_policy.security.policy).Statement[2].Condition.StringEquals["acm-pca:TemplateArn"] == "arn:aws:acm-pca:::template/EndEntityCertificate/V1")
    error_message = "the brokers may issue only end-entity certificates, only from the cluster's CA"
  }
  assert {
    condition     = length(aws_acmpca_certificate_authority.this) == 1 && aws_acmpca_certificate_authority.this[0].type == "ROOT"
    error_message = "without private_ca_arn the module creates a root CA"
  }
}

run "nlb_passes_tls_through" {
  command = apply

  # (ssl_policy is computed, so the mock fills it in; a TCP listener has none on AWS.)
  assert {
    condition = (aws_lb_listener.kafka.protocol == "TCP" && aws_lb_listener.kafka.port == 9092 &&
      aws_lb_listener.kafka.certificate_arn == null &&
    aws_lb_target_group.kafka.protocol == "TCP" && aws_lb_target_group.kafka.port == 9092)
    error_message = "the NLB must pass TLS through: TCP listener without certificate, TCP target group"
  }
}

run "plaintext_clients_by_explicit_opt_out" {
  command = apply

  variables {
    client_security_protocol = "PLAINTEXT"
  }

  expect_failures = [check.client_listener_is_plaintext]

  assert {
    condition = alltrue([for c in output.broker_configs :
      strcontains(c, "\nlisteners = \"PLAINTEXT://0.0.0.0:9092,INTERNAL://0.0.0.0:9094") &&
      strcontains(c, "\nlistener.security.protocol.map = \"PLAINTEXT:PLAINTEXT,INTERNAL:SSL,CONTROLLER:SSL\"\n") &&
      strcontains(c, "\nallow.everyone.if.no.acl.found = true\n")
    ])
    error_message = "the opt-out makes only the client listener plaintext; brokers and controllers stay on TLS"
  }
  assert {
    condition     = strcontains(output.client_properties, "\nsecurity.protocol=PLAINTEXT\n") && !strcontains(output.client_properties, "sasl.")
    error_message = "the client snippet must follow the opt-out"
  }
}

run "existing_private_ca" {
  command = apply

  variables {
    create_private_ca            = false
    private_ca_arn               = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/99999999-8888-7777-6666-555555555555"
    private_ca_signing_algorithm = "SHA256WITHRSA"
  }

  assert {
    condition     = length(aws_acmpca_certificate_authority.this) == 0 && length(aws_acmpca_certificate.root) == 0
    error_message = "no CA may be created when one is given"
  }
  assert {
    condition = alltrue([for s in slice(jsondecode(aws_iam_role_policy.security.policy).Statement, 2, 4) :
    s.Resource == "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/99999999-8888-7777-6666-555555555555"])
    error_message = "the brokers may use only the given CA"
  }
  assert {
    condition = (strcontains(base64decode(aws_launch_template.broker[0].user_data), "CA_REGION=\"us-east-1\"") &&
    strcontains(base64decode(aws_launch_template.broker[0].user_data), "--signing-algorithm \"SHA256WITHRSA\""))
    error_message = "the brokers must call the given CA in its own region with its algorithm"
  }
  assert {
    condition     = output.ca_certificate_pem == null && strcontains(output.client_properties, "aws acm-pca get-certificate-authority-certificate --region us-east-1 --certificate-authority-arn arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/99999999-8888-7777-6666-555555555555 ")
    error_message = "with a given CA (maybe in another region) the client snippet must say how to fetch its certificate from its region"
  }
}

run "rejects_private_ca_arn_without_opting_out_of_creation" {
  command = plan

  variables {
    private_ca_arn = "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/99999999-8888-7777-6666-555555555555"
  }

  expect_failures = [var.private_ca_arn]
}

run "rejects_unknown_client_protocol" {
  command = plan

  variables {
    client_security_protocol = "SASL_PLAINTEXT"
  }

  expect_failures = [var.client_security_protocol]
}

run "rejects_weak_admin_password" {
  command = plan

  variables {
    admin_password = "short"
  }

  expect_failures = [var.admin_password]
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

run "mirror_links_and_extra_scram_users" {
  command = apply

  variables {
    extra_scram_users = [{ name = "mirror", secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/mirror-user-AbCdEf" }]
    extra_super_users = ["User:mirror"]
    mirror_links = [{
      name                       = "dr"
      source_bootstrap_servers   = "10.9.0.10:9092,10.9.1.10:9092"
      source_sasl_username       = "mirror"
      source_password_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:src/strata/mirror-XyZ"
      include                    = ["orders\\..*", "it's"]
      exclude                    = [".*\\.tmp"]
      group_include              = "billing-.*"
    }]
  }

  # Controllers add the extra user at format, from its secret, next to the admin.
  assert {
    condition = alltrue([for i, lt in aws_launch_template.broker :
      strcontains(base64decode(lt.user_data), "USER_PASSWORD=\"$(read_secret \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/mirror-user-AbCdEf\")\"\n") &&
      strcontains(base64decode(lt.user_data), "EXTRA_SCRAM+=(--add-scram \"SCRAM-SHA-512=[name=mirror,password=$USER_PASSWORD]\")") &&
      strcontains(base64decode(lt.user_data), "--add-scram \"SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]\" \"$${EXTRA_SCRAM[@]}\"")
    ])
    error_message = "every controller must add the extra SCRAM user at format, reading its password from its secret"
  }
  assert {
    condition     = alltrue([for c in output.broker_configs : strcontains(c, "\nsuper.users = \"User:admin;User:CN=strata-test-broker;User:mirror\"\n")])
    error_message = "extra_super_users must be appended to super.users"
  }
  # Every broker writes the link's password file from the secret; only broker 1 creates the link.
  assert {
    condition = alltrue([for lt in aws_launch_template.broker :
      strcontains(base64decode(lt.user_data), "read_secret \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:src/strata/mirror-XyZ\" >\"/etc/strata/mirror/dr.password.new\"")
    ])
    error_message = "every broker must write the link's source password to its file, from the secret"
  }
  assert {
    condition = (strcontains(base64decode(aws_launch_template.broker[0].user_data), "systemctl enable strata-mirror-links.service\n") &&
      strcontains(base64decode(aws_launch_template.broker[0].user_data), "ensure_link 'dr' '--source-bootstrap-servers' '10.9.0.10:9092,10.9.1.10:9092' '--source-security-protocol' 'SASL_SSL' '--source-ssl-truststore-location' '/etc/strata/tls/ca.pem' '--source-sasl-mechanism' 'SCRAM-SHA-512' '--source-sasl-username' 'mirror' '--source-password-file' '/etc/strata/mirror/dr.password' '--include' 'orders\\..*' '--include' 'it'\\''s' '--exclude' '.*\\.tmp' '--sync-configs' '--group-include' 'billing-.*' '--interval-ms' '5000' || FAILED=1\n") &&
      strcontains(base64decode(aws_launch_template.broker[0].user_data), "mirror() { /usr/local/bin/strata mirror --bootstrap-server \"10.0.1.10:9092\" --command-config \"$CONFIG\" \"$@\"; }") &&
    alltrue([for lt in slice(aws_launch_template.broker, 1, 3) : !strcontains(base64decode(lt.user_data), "strata-mirror-links")]))
    error_message = "broker 1 alone must create the link (strata mirror create with the link's settings, quoted), through its own SASL_SSL listener"
  }
  # Secrets are named, never inlined.
  assert {
    condition = alltrue([for lt in aws_launch_template.broker :
      !strcontains(base64decode(lt.user_data), "generatedpasswordforthetestsonly") &&
      !strcontains(base64decode(lt.user_data), "-----BEGIN") &&
      !strcontains(base64decode(lt.user_data), "PRIVATE KEY")
    ])
    error_message = "the user data must not contain a password or key material"
  }
  assert {
    condition = [for s in jsondecode(aws_iam_role_policy.security.policy).Statement : s.Resource if s.Action == "secretsmanager:GetSecretValue"] == [[
      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/admin-AbCdEf",
      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:strata-test/strata/mirror-user-AbCdEf",
      "arn:aws:secretsmanager:eu-west-1:123456789012:secret:src/strata/mirror-XyZ",
    ]]
    error_message = "the brokers may read exactly the admin, extra user and link secrets"
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.security.policy).Statement[1].Condition.StringEquals["kms:EncryptionContext:SecretARN"] == jsondecode(aws_iam_role_policy.security.policy).Statement[0].Resource
    error_message = "the key may decrypt exactly the secrets the brokers may read"
  }
}
