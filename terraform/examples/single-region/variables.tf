variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Cluster name."
  type        = string
  default     = "strata-demo"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC this example creates."
  type        = string
  default     = "10.40.0.0/16"
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "m6i.large"
}

variable "strata_binary_url" {
  description = "https:// URL or s3://bucket/key of the strata binary (x86_64 Linux) the brokers install."
  type        = string
}

variable "strata_binary_sha256" {
  description = "Optional SHA-256 of the binary."
  type        = string
  default     = ""
}

variable "admin_username" {
  description = "SCRAM user name of the first admin (its password is generated into Secrets Manager)."
  type        = string
  default     = "admin"
}

variable "admin_secret_recovery_window_days" {
  description = "Days the admin secret can be restored after terraform destroy (0: deleted at once, demo clusters only)."
  type        = number
  default     = 7
}

variable "client_cidr_blocks" {
  description = "Extra CIDRs allowed to reach Kafka (SASL_SSL) on 9092 (the VPC is always allowed)."
  type        = list(string)
  default     = []
}

variable "metrics_cidr_blocks" {
  description = "Extra CIDRs allowed to scrape /metrics on 9644 (the VPC is always allowed)."
  type        = list(string)
  default     = []
}

variable "force_destroy_bucket" {
  description = "Let terraform destroy delete the segment bucket with data in it (demo clusters only)."
  type        = bool
  default     = false
}
