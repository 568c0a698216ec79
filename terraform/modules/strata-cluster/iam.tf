# ---------------------------------------------------------------------------
# Broker IAM role: S3 access to exactly the segment prefix, the KMS key through S3,
# and (optionally) the binary object and Session Manager.
# ---------------------------------------------------------------------------

locals {
  prefix_objects_arn   = "${local.bucket_arn}/${var.remote_storage_prefix}/*"
  prefix_list_patterns = [var.remote_storage_prefix, "${var.remote_storage_prefix}/*"]

  broker_object_actions = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
  ]

  broker_policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "SegmentObjectsUnderPrefix"
          Effect   = "Allow"
          Action   = local.broker_object_actions
          Resource = local.prefix_objects_arn
        },
        {
          Sid       = "ListSegmentsUnderPrefix"
          Effect    = "Allow"
          Action    = "s3:ListBucket"
          Resource  = local.bucket_arn
          Condition = { StringLike = { "s3:prefix" = local.prefix_list_patterns } }
        },
        {
          Sid      = "UseClusterKeyThroughS3"
          Effect   = "Allow"
          Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource = local.kms_key_arn
          Condition = {
            StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" }
          }
        },
      ],
      local.binary_from_s3 ? [
        {
          Sid      = "ReadStrataBinary"
          Effect   = "Allow"
          Action   = "s3:GetObject"
          Resource = local.binary_object_arn
        },
      ] : [],
    )
  })
}

resource "aws_iam_role" "broker" {
  name_prefix = "${substr(var.name, 0, 24)}-broker-"
  description = "Strata cluster ${var.name} brokers"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Principal = { Service = "ec2.amazonaws.com" }
        Action    = "sts:AssumeRole"
      },
    ]
  })

  tags = local.common_tags
}

resource "aws_iam_role_policy" "broker" {
  name   = "strata-tiered-storage"
  role   = aws_iam_role.broker.id
  policy = local.broker_policy
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enable_ssm ? 1 : 0

  role       = aws_iam_role.broker.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "broker" {
  name_prefix = "${substr(var.name, 0, 24)}-broker-"
  role        = aws_iam_role.broker.name

  tags = local.common_tags
}
