variable "name" {
  description = "Name prefix of both clusters."
  type        = string
  default     = "strata"
}

variable "primary_region" {
  description = "Region of the primary (source) cluster."
  type        = string
  default     = "us-east-1"
}

variable "secondary_region" {
  description = "Region of the secondary (mirror) cluster."
  type        = string
  default     = "us-west-2"
}

variable "primary_vpc_cidr" {
  description = "VPC CIDR of the primary cluster (must not overlap the secondary's, for peering)."
  type        = string
  default     = "10.41.0.0/16"
}

variable "secondary_vpc_cidr" {
  description = "VPC CIDR of the secondary cluster."
  type        = string
  default     = "10.42.0.0/16"
}

variable "brokers_per_cluster" {
  description = "Brokers in each cluster."
  type        = number
  default     = 3
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "m6i.large"
}

variable "strata_binary_url" {
  description = "https:// URL of the strata binary (an s3:// object must be readable from both regions)."
  type        = string
}

variable "mirror_link" {
  description = "The mirror link from the secondary (target) cluster to the primary (source): topics whose whole name matches an include regex (and no exclude regex) become read-only mirror topics on the secondary. enabled = false deploys two independent clusters. sync_group_offsets cannot work with these clusters' mutual-TLS inter-broker listener yet (a check warns)."
  type = object({
    enabled            = optional(bool, true)
    name               = optional(string, "primary-to-secondary")
    username           = optional(string, "mirror")
    include            = optional(list(string), [".*"])
    exclude            = optional(list(string), [])
    sync_configs       = optional(bool, true)
    sync_group_offsets = optional(bool, false)
    group_include      = optional(string)
    interval_ms        = optional(number, 5000)
  })
  default = {}

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.mirror_link.username)) && var.mirror_link.username != "admin"
    error_message = "mirror_link.username must be 1-64 letters, digits, '.', '_' or '-', and not the admin."
  }
}
