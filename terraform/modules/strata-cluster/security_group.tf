# ---------------------------------------------------------------------------
# Security group shared by all brokers.
#   9092 client listener (SASL_SSL): clients (client_cidr_blocks), the VPC (NLB), brokers
#   9094 INTERNAL (mutual TLS):      brokers of this cluster only (the group itself)
#   9093 CONTROLLER (mutual TLS):    brokers of this cluster only (the group itself)
#   9644 HTTP (/metrics, /health, /ready; no data, no credentials): metrics_cidr_blocks,
#        the VPC (NLB health checks), brokers
# ---------------------------------------------------------------------------

resource "aws_security_group" "broker" {
  name_prefix = "${var.name}-strata-"
  description = "Strata brokers of cluster ${var.name}"
  vpc_id      = var.vpc_id

  tags = merge(local.common_tags, { Name = "${var.name}-strata-broker" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "kafka_self" {
  security_group_id            = aws_security_group.broker.id
  description                  = "Kafka client listener: brokers of this cluster (admin tools run on them)"
  ip_protocol                  = "tcp"
  from_port                    = local.kafka_port
  to_port                      = local.kafka_port
  referenced_security_group_id = aws_security_group.broker.id
}

# The VPC CIDR has its own rule: it may be unknown at plan time (a VPC created in the
# same apply), and counts must be known.
resource "aws_vpc_security_group_ingress_rule" "kafka_vpc" {
  security_group_id = aws_security_group.broker.id
  description       = "Kafka client listener (SASL_SSL by default): clients in the VPC and the bootstrap NLB"
  ip_protocol       = "tcp"
  from_port         = local.kafka_port
  to_port           = local.kafka_port
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_ingress_rule" "kafka_clients" {
  for_each = toset(var.client_cidr_blocks)

  security_group_id = aws_security_group.broker.id
  description       = "Kafka client listener (SASL_SSL by default): clients"
  ip_protocol       = "tcp"
  from_port         = local.kafka_port
  to_port           = local.kafka_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "internal_self" {
  security_group_id            = aws_security_group.broker.id
  description                  = "INTERNAL listener (mutual TLS): replication between brokers of this cluster only"
  ip_protocol                  = "tcp"
  from_port                    = local.internal_port
  to_port                      = local.internal_port
  referenced_security_group_id = aws_security_group.broker.id
}

resource "aws_vpc_security_group_ingress_rule" "controller_self" {
  security_group_id            = aws_security_group.broker.id
  description                  = "CONTROLLER listener (mutual TLS): brokers of this cluster only"
  ip_protocol                  = "tcp"
  from_port                    = local.controller_port
  to_port                      = local.controller_port
  referenced_security_group_id = aws_security_group.broker.id
}

resource "aws_vpc_security_group_ingress_rule" "http_self" {
  security_group_id            = aws_security_group.broker.id
  description                  = "HTTP metrics/health between brokers"
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.broker.id
}

resource "aws_vpc_security_group_ingress_rule" "http_vpc" {
  security_group_id = aws_security_group.broker.id
  description       = "HTTP /metrics, /health, /ready: Prometheus in the VPC and NLB health checks"
  ip_protocol       = "tcp"
  from_port         = local.http_port
  to_port           = local.http_port
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}

resource "aws_vpc_security_group_ingress_rule" "http_metrics" {
  for_each = toset(var.metrics_cidr_blocks)

  security_group_id = aws_security_group.broker.id
  description       = "HTTP /metrics, /health, /ready: Prometheus"
  ip_protocol       = "tcp"
  from_port         = local.http_port
  to_port           = local.http_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.broker.id
  description       = "HTTPS out: S3, KMS, SSM, Secrets Manager, ACM Private CA, the strata binary download"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.broker.id
  description       = "HTTP out: the distribution's package repositories"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "cluster" {
  for_each = {
    kafka      = local.kafka_port
    internal   = local.internal_port
    controller = local.controller_port
    http       = local.http_port
  }

  security_group_id            = aws_security_group.broker.id
  description                  = "To other brokers: ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.broker.id
}

resource "aws_vpc_security_group_egress_rule" "dns" {
  for_each = toset(["udp", "tcp"])

  security_group_id = aws_security_group.broker.id
  description       = "DNS to the VPC resolver (${each.key})"
  ip_protocol       = each.key
  from_port         = 53
  to_port           = 53
  cidr_ipv4         = data.aws_vpc.this.cidr_block
}
