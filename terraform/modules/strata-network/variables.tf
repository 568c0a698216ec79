variable "name" {
  description = "Name prefix of the network's resources."
  type        = string
}

variable "cidr_block" {
  description = "IPv4 CIDR of the VPC. Private subnets take /20s from its start, the public subnets after them."
  type        = string
  default     = "10.0.0.0/16"
}

variable "az_count" {
  description = "How many availability zones get a private subnet (one broker subnet each)."
  type        = number
  default     = 3
}

variable "availability_zones" {
  description = "Explicit availability zones. Empty: the first az_count available zones of the region."
  type        = list(string)
  default     = []
}

variable "create_nat_gateway" {
  description = "Create a public subnet, an internet gateway and one NAT gateway so brokers can download the strata binary and packages. S3 is reached through a gateway endpoint either way."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
