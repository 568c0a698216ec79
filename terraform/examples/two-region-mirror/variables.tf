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

# ---------------------------------------------------------------------------
# FUTURE: the mirror link. Placeholder for Strata's cross-cluster mirroring, which is
# not implemented yet. Keep enabled = false; the shape may change when it lands.
# ---------------------------------------------------------------------------
variable "mirror_link" {
  description = "FUTURE, not yet implemented: the mirror link from the secondary cluster to the primary (source) cluster. enabled = true today only opens the secondary's Kafka port to the primary VPC and fails the check block."
  type = object({
    enabled       = bool
    name          = optional(string, "primary-to-secondary")
    topics        = optional(list(string), [".*"])
    consumer_lag  = optional(bool, true)
    sync_offsets  = optional(bool, true)
    sync_configs  = optional(bool, true)
    source_prefix = optional(string, "")
  })
  default = {
    enabled = false
  }
}
