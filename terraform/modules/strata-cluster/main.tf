data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

# count, not for_each: the example creates its subnets in the same apply, and the
# count (unlike the ids) is known at plan time.
data "aws_subnet" "this" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

locals {
  partition  = data.aws_partition.current.partition
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name

  common_tags = merge(var.tags, {
    "strata:cluster" = var.name
  })

  # Ports (fixed: the security group, the NLB and the rendered config agree on them).
  kafka_port      = 9092 # the client listener (SASL_SSL by default), behind the NLB
  controller_port = 9093 # CONTROLLER listener: SSL, client certificates required
  internal_port   = 9094 # INTERNAL listener (replication between brokers): SSL, client certificates required
  http_port       = 9644

  # Listener names (Kafka's listener model). The client listener is named after its
  # protocol, as Kafka's defaults do; the two cluster-internal ones are always mutual TLS.
  client_listener     = var.client_security_protocol
  internal_listener   = "INTERNAL"
  controller_listener = "CONTROLLER"
  listener_security_protocol_map = join(",", [
    "${local.client_listener}:${var.client_security_protocol}",
    "${local.internal_listener}:SSL",
    "${local.controller_listener}:SSL",
  ])
  # With PLAINTEXT clients there is no authenticated principal but the brokers, so
  # nothing could work without ACLs; the opt-out opens it (see the variable).
  allow_everyone_if_no_acl_found = var.client_security_protocol == "PLAINTEXT"

  # The cluster id `strata format` writes on every node: stable, unique per account,
  # region, cluster name and bucket.
  cluster_id = md5("${local.account_id}/${local.region}/${var.name}/${local.bucket_name}")

  # Broker identity: position i (0-based) is node id i+1, in subnet i % #subnets. Both
  # follow from the position alone, so replacing an instance keeps its node id, subnet,
  # network interface (hence IP) and data volume.
  broker_indexes = range(var.broker_count)
  node_ids       = [for i in local.broker_indexes : i + 1]
  broker_subnet  = [for i in local.broker_indexes : var.subnet_ids[i % length(var.subnet_ids)]]
  broker_az      = [for i in local.broker_indexes : data.aws_subnet.this[i % length(var.subnet_ids)].availability_zone]
  is_controller  = [for i in local.broker_indexes : i < var.controller_count]
  process_roles  = [for i in local.broker_indexes : local.is_controller[i] ? ["broker", "controller"] : ["broker"]]
  # Pinned addresses are known at plan time; otherwise each interface's (stable) address.
  broker_ips = length(var.broker_private_ips) > 0 ? var.broker_private_ips : aws_network_interface.broker[*].private_ip

  controller_quorum_voters = join(",", [
    for i in local.broker_indexes : "${local.node_ids[i]}@${local.broker_ips[i]}:${local.controller_port}" if local.is_controller[i]
  ])

  # Tiered storage.
  bucket_name        = aws_s3_bucket.segments.bucket
  bucket_arn         = aws_s3_bucket.segments.arn
  remote_storage_uri = "s3://${local.bucket_name}/${var.remote_storage_prefix}"
  kms_key_arn        = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn

  # The binary, when it comes from S3: the role may read exactly that object.
  binary_from_s3    = startswith(var.strata_binary_url, "s3://")
  binary_s3_path    = local.binary_from_s3 ? trimprefix(var.strata_binary_url, "s3://") : ""
  binary_object_arn = local.binary_from_s3 ? "arn:${local.partition}:s3:::${local.binary_s3_path}" : ""

  ami_ssm_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
  ami_id            = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.al2023[0].value

  # /etc/strata/strata.toml of each broker. Keys are Strata's (Kafka's) property names;
  # the broker rejects unknown keys, so the template holds exactly the supported set.
  broker_configs = [
    for i in local.broker_indexes : templatefile("${path.module}/templates/strata.toml.tftpl", {
      node_id       = local.node_ids[i]
      process_roles = local.process_roles[i]
      listeners = join(",", concat(
        ["${local.client_listener}://0.0.0.0:${local.kafka_port}", "${local.internal_listener}://0.0.0.0:${local.internal_port}"],
        local.is_controller[i] ? ["${local.controller_listener}://0.0.0.0:${local.controller_port}"] : [],
      ))
      advertised_listeners           = "${local.client_listener}://${local.broker_ips[i]}:${local.kafka_port},${local.internal_listener}://${local.broker_ips[i]}:${local.internal_port}"
      listener_security_protocol_map = local.listener_security_protocol_map
      inter_broker_listener_name     = local.internal_listener
      controller_listener_names      = local.controller_listener
      # Client certificates required on the broker-to-broker and controller listeners
      # (the latter only where this node has one).
      mtls_listeners             = local.is_controller[i] ? [lower(local.internal_listener), lower(local.controller_listener)] : [lower(local.internal_listener)]
      ssl_certificate_location   = local.ssl_certificate_path
      ssl_key_location           = local.ssl_key_path
      ssl_truststore_location    = local.ssl_truststore_path
      sasl_enabled_mechanisms    = var.sasl_mechanism
      super_users                = local.super_users
      allow_everyone             = local.allow_everyone_if_no_acl_found
      http_listener              = "0.0.0.0:${local.http_port}"
      controller_quorum_voters   = local.controller_quorum_voters
      log_dirs                   = var.log_dirs
      remote_storage_uri         = local.remote_storage_uri
      remote_storage_s3_endpoint = ""
      remote_storage_s3_region   = local.region
      default_replication_factor = var.default_replication_factor
      min_insync_replicas        = var.min_insync_replicas
      num_partitions             = var.num_partitions
    })
  ]

  # The user data names the CA and the admin secret; it never holds a key, a certificate
  # or a password (tests/unit.tftest.hcl asserts it).
  user_data = [
    for i in local.broker_indexes : templatefile("${path.module}/templates/user-data.sh.tftpl", {
      node_id              = local.node_ids[i]
      strata_toml          = local.broker_configs[i]
      strata_service       = file("${path.module}/files/strata.service")
      binary_url           = var.strata_binary_url
      binary_sha256        = var.strata_binary_sha256
      data_volume_id       = aws_ebs_volume.data[i].id
      data_volume_device   = local.data_volume_device
      aws_region           = local.region
      log_dirs             = [for d in split(",", var.log_dirs) : trimspace(d)]
      strata_data_mount    = "/var/lib/strata"
      strata_config_marker = "STRATA_TOML_EOF"
      # TLS: a key made here, a certificate from the private CA.
      tls_dir              = local.tls_dir
      ssl_certificate_path = local.ssl_certificate_path
      ssl_key_path         = local.ssl_key_path
      ssl_truststore_path  = local.ssl_truststore_path
      private_ca_arn       = local.private_ca_arn
      private_ca_region    = local.private_ca_region
      signing_algorithm    = local.private_ca_signing_algorithm
      template_arn         = local.end_entity_template_arn
      certificate_days     = var.broker_certificate_validity_days
      certificate_cn       = local.broker_certificate_cn
      certificate_san      = "IP:${local.broker_ips[i]},DNS:${aws_lb.bootstrap.dns_name}"
      # The first format: cluster id and (on controllers) the admin SCRAM credential.
      cluster_id        = local.cluster_id
      is_controller     = local.is_controller[i]
      admin_secret_arn  = local.admin_secret_arn
      admin_username    = var.admin_username
      scram_mechanism   = var.sasl_mechanism
      extra_scram_users = var.extra_scram_users
      # Mirror links: every broker holds the source passwords; the first creates the links.
      mirror_links             = local.mirror_links
      create_mirror_links      = i == 0 && length(local.mirror_links) > 0
      client_security_protocol = var.client_security_protocol
      local_bootstrap_server   = "${local.broker_ips[i]}:${local.kafka_port}"
    })
  ]

  # Each link with its `strata mirror create` arguments, single-quoted for bash (the
  # regexes are the operator's), and the file its source password lands in.
  mirror_links = [
    for l in var.mirror_links : {
      name                       = l.name
      source_password_secret_arn = l.source_password_secret_arn
      password_file              = "/etc/strata/mirror/${l.name}.password"
      create_args = join(" ", [for a in concat(
        [l.name, "--source-bootstrap-servers", l.source_bootstrap_servers,
          "--source-security-protocol", "SASL_SSL",
          "--source-ssl-truststore-location", local.ssl_truststore_path,
          "--source-sasl-mechanism", var.sasl_mechanism,
          "--source-sasl-username", l.source_sasl_username,
        "--source-password-file", "/etc/strata/mirror/${l.name}.password"],
        flatten([for r in l.include : ["--include", r]]),
        flatten([for r in l.exclude : ["--exclude", r]]),
        l.sync_configs ? ["--sync-configs"] : [],
        l.sync_group_offsets ? ["--sync-group-offsets"] : [],
        l.group_include != null ? ["--group-include", l.group_include] : [],
        ["--interval-ms", tostring(l.interval_ms)],
      ) : "'${replace(a, "'", "'\\''")}'"])
    }
  ]

  data_volume_device = "/dev/sdf"
}

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = local.ami_ssm_parameter
}
