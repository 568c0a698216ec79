# ---------------------------------------------------------------------------
# Identity and placement
# ---------------------------------------------------------------------------

variable "name" {
  description = "Cluster name. Prefixes every resource name and tag; lower-case letters, digits and hyphens."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC the brokers, security group and load balancer live in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone. Broker N (node id N) goes to subnet_ids[(N-1) % length(subnet_ids)], so the order is part of each broker's identity: append, never reorder."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1 && length(distinct(var.subnet_ids)) == length(var.subnet_ids)
    error_message = "subnet_ids must hold at least one subnet and no duplicates."
  }
}

variable "require_distinct_azs" {
  description = "Fail the plan unless every subnet in subnet_ids is in a different availability zone (so brokers spread over AZs)."
  type        = bool
  default     = true
}

variable "broker_count" {
  description = "Number of brokers. Node ids are 1..broker_count, assigned by position and never reused for another machine."
  type        = number
  default     = 3

  validation {
    condition     = var.broker_count >= 1 && var.broker_count <= 64 && floor(var.broker_count) == var.broker_count
    error_message = "broker_count must be a whole number between 1 and 64."
  }
}

variable "controller_count" {
  description = "How many of the brokers (the lowest node ids) also run the Raft controller role. Odd, and at most broker_count."
  type        = number
  default     = 3

  validation {
    condition     = var.controller_count >= 1 && var.controller_count % 2 == 1
    error_message = "controller_count must be odd (1, 3 or 5) so the Raft quorum can form a majority."
  }
}

variable "broker_private_ips" {
  description = "Optional fixed private IPv4 address per broker (index 0 is node id 1), each inside that broker's subnet. Empty: AWS picks one when the broker's network interface is created, and it stays for the life of the interface."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for ip in var.broker_private_ips : can(cidrhost("${ip}/32", 0))])
    error_message = "broker_private_ips must be IPv4 addresses."
  }
}

# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------

variable "instance_type" {
  description = "EC2 instance type of every broker."
  type        = string
  default     = "m6i.large"
}

variable "architecture" {
  description = "CPU architecture of instance_type and of the strata binary: x86_64 or arm64. Picks the default Amazon Linux 2023 AMI."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI for the brokers. null: the latest Amazon Linux 2023 AMI for the architecture, from the public SSM parameter. The user data expects a systemd distribution with curl, the AWS CLI (for s3:// binaries), xfsprogs and blkid."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of each broker's root volume (GiB)."
  type        = number
  default     = 20
}

variable "data_volume_size_gb" {
  description = "Size of each broker's EBS data volume (GiB), mounted at /var/lib/strata. It holds the hot log segments; older segments live in S3."
  type        = number
  default     = 200
}

variable "data_volume_type" {
  description = "EBS volume type of the data volumes."
  type        = string
  default     = "gp3"
}

variable "data_volume_iops" {
  description = "Provisioned IOPS of each data volume (gp3, io1, io2). null: the volume type's baseline."
  type        = number
  default     = null
}

variable "data_volume_throughput" {
  description = "Provisioned throughput of each data volume in MiB/s (gp3 only). null: the baseline."
  type        = number
  default     = null
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore to the broker role so operators reach brokers with Session Manager instead of SSH."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# The strata binary
# ---------------------------------------------------------------------------

variable "strata_binary_url" {
  description = "Where the user data fetches the strata binary: an https:// URL (curl) or an s3://bucket/key object (AWS CLI; the broker role is granted s3:GetObject on exactly that object)."
  type        = string

  validation {
    condition     = can(regex("^(https://|s3://[^/]+/.+)", var.strata_binary_url))
    error_message = "strata_binary_url must start with https:// or be s3://bucket/key."
  }
}

variable "strata_binary_sha256" {
  description = "Optional SHA-256 (hex) of the strata binary; the user data refuses to install a binary that does not match."
  type        = string
  default     = ""

  validation {
    condition     = var.strata_binary_sha256 == "" || can(regex("^[0-9a-f]{64}$", var.strata_binary_sha256))
    error_message = "strata_binary_sha256 must be empty or 64 lower-case hex digits."
  }
}

# ---------------------------------------------------------------------------
# Tiered storage
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the S3 bucket created for tiered segments. null: a unique name starting with \"<name>-strata-\"."
  type        = string
  default     = null
}

variable "remote_storage_prefix" {
  description = "Key prefix inside the bucket under which brokers write segments (remote.storage.uri = s3://<bucket>/<prefix>). The broker role may touch nothing outside it."
  type        = string
  default     = "strata"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$", var.remote_storage_prefix))
    error_message = "remote_storage_prefix must be a non-empty key prefix without leading/trailing slashes or '*'."
  }
}

variable "kms_key_arn" {
  description = "ARN of an existing KMS key for the bucket's and the EBS volumes' encryption. null: the module creates a key (rotation on)."
  type        = string
  default     = null
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which the bucket aborts multipart uploads a broker never finished (e.g. it crashed mid-upload)."
  type        = number
  default     = 2
}

variable "force_destroy_bucket" {
  description = "Allow terraform destroy to delete the bucket with segments still in it. Leave false in production."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Network access and load balancer
# ---------------------------------------------------------------------------

variable "client_cidr_blocks" {
  description = "IPv4 CIDRs of Kafka clients allowed on the client port 9092 (SASL_SSL by default; through the NLB and directly to brokers, whose advertised listeners are their private IPs). The VPC's own CIDR is always allowed: do not repeat it here."
  type        = list(string)
  default     = []
}

variable "metrics_cidr_blocks" {
  description = "IPv4 CIDRs allowed on the HTTP port 9644 (/metrics, /health, /ready), e.g. Prometheus. The VPC's own CIDR is always allowed: do not repeat it here."
  type        = list(string)
  default     = []
}

variable "nlb_internal" {
  description = "Whether the client bootstrap NLB is internal (true) or internet-facing (false). Brokers advertise private IPs, so clients must reach the VPC either way."
  type        = bool
  default     = true
}

variable "nlb_subnet_ids" {
  description = "Subnets for the NLB. Empty: the broker subnets."
  type        = list(string)
  default     = []
}

variable "nlb_deletion_protection" {
  description = "Enable deletion protection on the NLB."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------
# Security: TLS, SASL/SCRAM, the first admin credential
# ---------------------------------------------------------------------------

variable "client_security_protocol" {
  description = "Security protocol of the client listener on port 9092: SASL_SSL (TLS + SCRAM, the default) or PLAINTEXT. WARNING: PLAINTEXT is an explicit opt-out for throwaway clusters: clients then send records and credentials unencrypted and unauthenticated (and allow.everyone.if.no.acl.found becomes true so they can work at all). Broker-to-broker and controller traffic stays on mutual TLS either way."
  type        = string
  default     = "SASL_SSL"

  validation {
    condition     = contains(["SASL_SSL", "PLAINTEXT"], var.client_security_protocol)
    error_message = "client_security_protocol must be SASL_SSL (default) or PLAINTEXT (explicit opt-out)."
  }
}

variable "sasl_mechanism" {
  description = "SCRAM mechanism of the client listener (sasl.enabled.mechanisms) and of the admin credential."
  type        = string
  default     = "SCRAM-SHA-512"

  validation {
    condition     = contains(["SCRAM-SHA-256", "SCRAM-SHA-512"], var.sasl_mechanism)
    error_message = "sasl_mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512."
  }
}

variable "admin_username" {
  description = "SCRAM user name of the first admin, created when the cluster is formatted; its principal (User:<name>) is in super.users."
  type        = string
  default     = "admin"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", var.admin_username))
    error_message = "admin_username must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "admin_password" {
  description = "Optional admin password (16-128 of A-Z a-z 0-9 . _ ~ -), e.g. from TF_VAR_admin_password. It reaches the admin secret through a write-only attribute, so the state never holds it (a saved plan file records input variables: keep those private). null: Secrets Manager generates a 32-character one (GetRandomPassword)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.admin_password == null || can(regex("^[A-Za-z0-9._~-]{16,128}$", var.admin_password))
    error_message = "admin_password must be 16-128 characters of A-Z a-z 0-9 . _ ~ - (the characters the SCRAM bootstrap syntax carries unquoted)."
  }
}

variable "admin_password_version" {
  description = "Version of the value written into the admin secret. The secret is written only when this changes: bump it (with a new admin_password, or none for a new generated one) to put a new value in the secret, one step of rotating the admin password (see the module README)."
  type        = number
  default     = 1
}

variable "admin_secret_recovery_window_days" {
  description = "Days Secrets Manager keeps the admin secret after deletion (0 deletes it at once: throwaway clusters only)."
  type        = number
  default     = 7

  validation {
    condition     = var.admin_secret_recovery_window_days == 0 || (var.admin_secret_recovery_window_days >= 7 && var.admin_secret_recovery_window_days <= 30)
    error_message = "admin_secret_recovery_window_days must be 0 or between 7 and 30."
  }
}

variable "create_private_ca" {
  description = "Create a root ACM Private CA for this cluster's broker certificates (ACM Private CA bills each CA monthly). false: set private_ca_arn to an existing CA."
  type        = bool
  default     = true
}

variable "private_ca_arn" {
  description = "ARN of an existing, active ACM Private CA that issues the brokers' certificates, with create_private_ca = false (one CA can serve several clusters, also in other regions: the brokers call it in its own region)."
  type        = string
  default     = null

  validation {
    condition     = var.private_ca_arn == null || can(regex("^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:[0-9]{12}:certificate-authority/[0-9a-f-]+$", var.private_ca_arn))
    error_message = "private_ca_arn must be an ACM Private CA ARN (arn:<partition>:acm-pca:<region>:<account>:certificate-authority/<id>)."
  }
  validation {
    condition     = var.create_private_ca == (var.private_ca_arn == null)
    error_message = "Set exactly one of create_private_ca = true (the default) or private_ca_arn (with create_private_ca = false)."
  }
}

variable "private_ca_signing_algorithm" {
  description = "Signing algorithm of private_ca_arn (its key type decides: SHA256WITHECDSA for an EC key, SHA256WITHRSA for RSA). Ignored when the module creates the CA (EC P-256)."
  type        = string
  default     = "SHA256WITHECDSA"

  validation {
    condition     = contains(["SHA256WITHECDSA", "SHA384WITHECDSA", "SHA512WITHECDSA", "SHA256WITHRSA", "SHA384WITHRSA", "SHA512WITHRSA"], var.private_ca_signing_algorithm)
    error_message = "private_ca_signing_algorithm must be one of SHA{256,384,512}WITH{ECDSA,RSA}."
  }
}

variable "broker_certificate_validity_days" {
  description = "Validity of each broker's certificate, issued at first boot. Renew before it ends by replacing brokers one at a time (or running /usr/local/sbin/strata-issue-certificate and restarting strata)."
  type        = number
  default     = 365

  validation {
    condition     = var.broker_certificate_validity_days >= 1 && var.broker_certificate_validity_days <= 3650
    error_message = "broker_certificate_validity_days must be between 1 and 3650."
  }
}

# ---------------------------------------------------------------------------
# Broker configuration (rendered into /etc/strata/strata.toml)
# ---------------------------------------------------------------------------

variable "log_dirs" {
  description = "log.dirs: comma-separated data directories, each under /var/lib/strata (the data volume's mount point, the only path the hardened unit may write)."
  type        = string
  default     = "/var/lib/strata/data"

  validation {
    condition     = alltrue([for d in split(",", var.log_dirs) : startswith(trimspace(d), "/var/lib/strata/")])
    error_message = "Every path in log_dirs must be under /var/lib/strata/."
  }
}

variable "default_replication_factor" {
  description = "default.replication.factor for auto-created and default topics. At most broker_count."
  type        = number
  default     = 3
}

variable "min_insync_replicas" {
  description = "min.insync.replicas. At most default_replication_factor."
  type        = number
  default     = 2
}

variable "num_partitions" {
  description = "num.partitions: default partition count of new topics."
  type        = number
  default     = 1

  validation {
    condition     = var.num_partitions >= 1
    error_message = "num_partitions must be at least 1."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- extra SCRAM users and mirror links --------------------------------------

variable "extra_scram_users" {
  description = "More SCRAM users created with the first admin when the cluster is formatted (the controllers' first boot only; later users: strata users create). Each password is read at boot from a Secrets Manager secret in this region, encrypted with this cluster's KMS key (output kms_key_arn), holding 16-128 of A-Z a-z 0-9 . _ ~ -."
  type = list(object({
    name       = string
    secret_arn = string
  }))
  default = []

  validation {
    condition     = alltrue([for u in var.extra_scram_users : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", u.name))])
    error_message = "extra_scram_users: each name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
}

variable "extra_super_users" {
  description = "More principals (User:<name>) appended to super.users, besides the admin and the brokers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.extra_super_users : can(regex("^User:[^;]+$", p))])
    error_message = "extra_super_users: each entry must be User:<name> without ';'."
  }
}

variable "mirror_links" {
  description = "Mirror links this (target) cluster creates from a SASL_SSL source whose certificates chain to this cluster's CA. Every broker writes the source password, read from a Secrets Manager secret in this region (encrypted with this cluster's KMS key), to /etc/strata/mirror/<name>.password at boot; the first broker runs strata-mirror-links.service, which creates each link with `strata mirror create` once the cluster answers and leaves a link that exists alone."
  type = list(object({
    name                       = string
    source_bootstrap_servers   = string
    source_sasl_username       = string
    source_password_secret_arn = string
    include                    = optional(list(string), [".*"])
    exclude                    = optional(list(string), [])
    sync_configs               = optional(bool, true)
    sync_group_offsets         = optional(bool, false)
    group_include              = optional(string)
    interval_ms                = optional(number, 5000)
  }))
  default = []

  validation {
    condition     = alltrue([for l in var.mirror_links : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", l.name))])
    error_message = "mirror_links: each name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
  }
  validation {
    condition     = alltrue([for l in var.mirror_links : length(l.include) > 0])
    error_message = "mirror_links: include must name at least one regex."
  }
}
