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

output "client_properties" {
  description = "Kafka client properties for this cluster (SASL_SSL + SCRAM): how to fetch the CA certificate and where the admin password is. No secret values."
  value       = module.strata.client_properties
}

output "admin_password_secret_arn" {
  description = "Secrets Manager secret holding the first admin's SCRAM password."
  value       = module.strata.admin_password_secret_arn
}

output "ca_certificate_pem" {
  description = "The private CA's certificate (public): the trust anchor for clients."
  value       = module.strata.ca_certificate_pem
}

output "private_ca_arn" {
  description = "ACM Private CA issuing the brokers' certificates."
  value       = module.strata.private_ca_arn
}

output "super_users" {
  description = "super.users of the brokers."
  value       = module.strata.super_users
}
