output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "Private subnets, one per availability zone, in zone order."
  value       = aws_subnet.private[*].id
}

output "availability_zones" {
  description = "Availability zones of the private subnets, in order."
  value       = local.azs
}

output "private_route_table_id" {
  description = "Route table of the private subnets (for peering or Transit Gateway routes)."
  value       = aws_route_table.private.id
}
