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
