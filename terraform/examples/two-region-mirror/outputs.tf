output "primary_bootstrap_servers" {
  description = "bootstrap.servers of the primary cluster."
  value       = module.primary.bootstrap_servers
}

output "secondary_bootstrap_servers" {
  description = "bootstrap.servers of the secondary cluster."
  value       = module.secondary.bootstrap_servers
}

output "primary_bucket_name" {
  description = "Segment bucket of the primary cluster."
  value       = module.primary.bucket_name
}

output "secondary_bucket_name" {
  description = "Segment bucket of the secondary cluster."
  value       = module.secondary.bucket_name
}

output "prometheus_scrape_targets" {
  description = "Scrape targets of both clusters, by cluster."
  value = {
    primary   = module.primary.prometheus_scrape_targets
    secondary = module.secondary.prometheus_scrape_targets
  }
}

output "mirror_link" {
  description = "The mirror link (null when disabled): its name, the source it fetches from, the secrets holding its user's password in each region, and the peering it uses."
  value = local.mirror_enabled ? {
    name                        = var.mirror_link.name
    username                    = var.mirror_link.username
    include                     = var.mirror_link.include
    exclude                     = var.mirror_link.exclude
    sync_configs                = var.mirror_link.sync_configs
    sync_group_offsets          = var.mirror_link.sync_group_offsets
    source_bootstrap_servers    = local.primary_broker_servers
    target_bootstrap_servers    = module.secondary.bootstrap_servers
    password_secret_arn         = aws_secretsmanager_secret.mirror[0].arn
    password_secret_replica_arn = local.mirror_secret_replica_arn
    vpc_peering_connection_id   = aws_vpc_peering_connection.mirror[0].id
    created_by                  = "strata-mirror-links.service on the secondary's broker 1"
  } : null
}

output "primary_client_properties" {
  description = "Kafka client properties for the primary cluster (SASL_SSL + SCRAM; no secret values)."
  value       = module.primary.client_properties
}

output "secondary_client_properties" {
  description = "Kafka client properties for the secondary cluster (SASL_SSL + SCRAM; no secret values)."
  value       = module.secondary.client_properties
}

output "admin_password_secret_arns" {
  description = "Secrets Manager secret of each cluster's first admin password, by cluster."
  value = {
    primary   = module.primary.admin_password_secret_arn
    secondary = module.secondary.admin_password_secret_arn
  }
}

output "ca_certificate_pem" {
  description = "The private CA's certificate (public), trusted by clients of both clusters."
  value       = module.primary.ca_certificate_pem
}
