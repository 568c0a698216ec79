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
  description = "FUTURE: the requested mirror link (not created yet)."
  value = merge(var.mirror_link, {
    source_bootstrap_servers = module.primary.bootstrap_servers
    target_bootstrap_servers = module.secondary.bootstrap_servers
    status                   = "not implemented"
  })
}
