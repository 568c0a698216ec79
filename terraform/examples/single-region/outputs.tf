output "bootstrap_servers" {
  description = "bootstrap.servers for Kafka clients inside the VPC."
  value       = module.strata.bootstrap_servers
}

output "bucket_name" {
  description = "S3 bucket holding tiered segments."
  value       = module.strata.bucket_name
}

output "remote_storage_uri" {
  description = "remote.storage.uri of the brokers."
  value       = module.strata.remote_storage_uri
}

output "prometheus_scrape_targets" {
  description = "Targets for a Prometheus static_configs block."
  value       = module.strata.prometheus_scrape_targets
}

output "controller_quorum_voters" {
  description = "controller.quorum.voters of the cluster."
  value       = module.strata.controller_quorum_voters
}

output "broker_configs" {
  description = "Rendered /etc/strata/strata.toml of each broker."
  value       = module.strata.broker_configs
}

output "iam_role_name" {
  description = "The brokers' IAM role."
  value       = module.strata.iam_role_name
}

output "broker_launch_template_ids" {
  description = "Launch template of each broker."
  value       = module.strata.broker_launch_template_ids
}

output "broker_instance_ids" {
  description = "Instance of each broker."
  value       = module.strata.broker_instance_ids
}

output "nlb_arn" {
  description = "The bootstrap NLB."
  value       = module.strata.nlb_arn
}

output "kms_key_arn" {
  description = "KMS key of the bucket and volumes."
  value       = module.strata.kms_key_arn
}
