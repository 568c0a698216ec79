# ---------------------------------------------------------------------------
# Network load balancer for client bootstrap. Clients connect to it once, get the
# cluster metadata and then talk to each broker at its advertised (private) address.
# TLS passes through: TCP listener and target group, the brokers terminate TLS (their
# certificates name the NLB's DNS name and their own IP), so SASL_SSL is end to end.
# ---------------------------------------------------------------------------

resource "aws_lb" "bootstrap" {
  #checkov:skip=CKV_AWS_91:Access logs of a TCP bootstrap NLB record only connection opens; they need an operator-owned log bucket. Broker metrics cover connections.
  #checkov:skip=CKV2_AWS_28:WAF protects HTTP(S) load balancers; this is a TCP (Kafka protocol) NLB, which WAF cannot attach to.
  #checkov:skip=CKV_AWS_150:Deletion protection is a variable (nlb_deletion_protection), off by default so that examples and tests can be destroyed.
  name_prefix                      = "strata"
  internal                         = var.nlb_internal
  load_balancer_type               = "network"
  subnets                          = length(var.nlb_subnet_ids) > 0 ? var.nlb_subnet_ids : var.subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.nlb_deletion_protection

  tags = merge(local.common_tags, { Name = "${var.name}-strata-bootstrap" })
}

resource "aws_lb_target_group" "kafka" {
  name_prefix          = "strata"
  port                 = local.kafka_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.http_port)
    path                = "/ready"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }

  tags = local.common_tags
}

resource "aws_lb_target_group_attachment" "kafka" {
  count = var.broker_count

  target_group_arn = aws_lb_target_group.kafka.arn
  target_id        = aws_instance.broker[count.index].id
  port             = local.kafka_port
}

resource "aws_lb_listener" "kafka" {
  #checkov:skip=CKV_AWS_2:TLS passthrough: the listener carries Kafka over TCP and the brokers terminate TLS themselves (SASL_SSL end to end, client certificates and SCRAM seen by the broker); an NLB TLS listener would break that.
  #checkov:skip=CKV_AWS_103:Not a TLS listener on purpose (passthrough): see CKV_AWS_2.
  load_balancer_arn = aws_lb.bootstrap.arn
  port              = local.kafka_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka.arn
  }

  tags = local.common_tags
}
