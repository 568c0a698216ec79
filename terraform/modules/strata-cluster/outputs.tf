output "bootstrap_servers" {
  description = "Kafka bootstrap address (the NLB), for bootstrap.servers."
  value       = "${aws_lb.bootstrap.dns_name}:${local.kafka_port}"
}

output "nlb_dns_name" {
  description = "DNS name of the bootstrap NLB."
  value       = aws_lb.bootstrap.dns_name
}

output "nlb_arn" {
  description = "ARN of the bootstrap NLB."
  value       = aws_lb.bootstrap.arn
}

output "bucket_name" {
  description = "Name of the S3 bucket holding tiered segments."
  value       = aws_s3_bucket.segments.bucket
}

output "bucket_arn" {
  description = "ARN of the S3 bucket holding tiered segments."
  value       = aws_s3_bucket.segments.arn
}

output "remote_storage_uri" {
  description = "remote.storage.uri every broker is configured with (s3://bucket/prefix)."
  value       = local.remote_storage_uri
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket and the broker volumes."
  value       = local.kms_key_arn
}

output "prometheus_scrape_targets" {
  description = "host:port of every broker's HTTP listener (/metrics), for a Prometheus static_configs target list."
  value       = [for ip in local.broker_ips : "${ip}:${local.http_port}"]
}

output "broker_node_ids" {
  description = "node.id of each broker, in broker order."
  value       = local.node_ids
}

output "broker_private_ips" {
  description = "Private IP of each broker (its advertised listener host), in broker order."
  value       = local.broker_ips
}

output "broker_availability_zones" {
  description = "Availability zone of each broker, in broker order."
  value       = local.broker_az
}

output "broker_instance_ids" {
  description = "EC2 instance id of each broker, in broker order."
  value       = aws_instance.broker[*].id
}

output "broker_launch_template_ids" {
  description = "Launch template id of each broker, in broker order."
  value       = aws_launch_template.broker[*].id
}

output "controller_quorum_voters" {
  description = "controller.quorum.voters shared by every broker."
  value       = local.controller_quorum_voters
}

output "broker_configs" {
  description = "Rendered /etc/strata/strata.toml of each broker, in broker order."
  value       = local.broker_configs
}

output "security_group_id" {
  description = "Security group of the brokers."
  value       = aws_security_group.broker.id
}

output "iam_role_arn" {
  description = "ARN of the brokers' IAM role."
  value       = aws_iam_role.broker.arn
}

output "iam_role_name" {
  description = "Name of the brokers' IAM role."
  value       = aws_iam_role.broker.name
}

# --- security -----------------------------------------------------------------------

output "client_security_protocol" {
  description = "security.protocol clients use on bootstrap_servers (SASL_SSL unless opted out)."
  value       = var.client_security_protocol
}

output "sasl_mechanism" {
  description = "sasl.mechanism of the client listener."
  value       = var.sasl_mechanism
}

output "admin_username" {
  description = "SCRAM user name of the first admin (principal User:<name>, a super user)."
  value       = var.admin_username
}

output "admin_password_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the first admin's password (the value is never an output)."
  value       = aws_secretsmanager_secret.admin.arn
}

output "super_users" {
  description = "super.users of every broker: the admin and the brokers' certificate principal."
  value       = local.super_users
}

output "private_ca_arn" {
  description = "ACM Private CA that issues the brokers' certificates (created by the module unless private_ca_arn was given)."
  value       = local.private_ca_arn
}

output "private_ca_created" {
  description = "Whether the module created the private CA (create_private_ca) rather than using private_ca_arn."
  value       = local.create_ca
}

output "ca_certificate_pem" {
  description = "PEM certificate of the private CA the module created: the trust anchor clients need (ssl.truststore.location / ssl.ca.location). Public, not a secret. null with private_ca_arn (fetch it with aws acm-pca get-certificate-authority-certificate, as client_properties says)."
  value       = local.ca_certificate_pem
}

output "client_properties" {
  description = "Kafka client properties (Java client / strata --command-config) for bootstrap_servers. Holds no secret: it says where the CA and the password come from."
  value = var.client_security_protocol == "PLAINTEXT" ? join("\n", [
    "# WARNING: client_security_protocol = PLAINTEXT: unencrypted, unauthenticated.",
    "bootstrap.servers=${aws_lb.bootstrap.dns_name}:${local.kafka_port}",
    "security.protocol=PLAINTEXT",
    "",
    ]) : join("\n", [
    "# Kafka client properties for Strata cluster ${var.name}.",
    "# The CA certificate (public; add its CertificateChain too if the CA is subordinate):",
    "#   aws acm-pca get-certificate-authority-certificate --region ${local.private_ca_region} --certificate-authority-arn ${local.private_ca_arn} --query Certificate --output text > strata-ca.pem",
    "# The password of ${var.admin_username} (secret; needs secretsmanager:GetSecretValue on it and kms:Decrypt on the key):",
    "#   aws secretsmanager get-secret-value --region ${local.region} --secret-id ${aws_secretsmanager_secret.admin.arn} --query SecretString --output text",
    "# librdkafka-based clients: sasl.username / sasl.password instead of sasl.jaas.config, ssl.ca.location instead of the truststore keys.",
    "bootstrap.servers=${aws_lb.bootstrap.dns_name}:${local.kafka_port}",
    "security.protocol=SASL_SSL",
    "sasl.mechanism=${var.sasl_mechanism}",
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${var.admin_username}\" password=\"<the secret's value>\";",
    "ssl.truststore.type=PEM",
    "ssl.truststore.location=strata-ca.pem",
    "",
  ])
}

output "broker_user_data" {
  description = "Each broker's first-boot script, as its launch template carries it (base64-decoded). It names secrets and the CA, never their values."
  value       = local.user_data
}
