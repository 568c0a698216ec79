# ---------------------------------------------------------------------------
# KMS key (unless the caller brings one): encrypts the segment bucket, the
# brokers' EBS volumes and the admin secret.
# ---------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "Strata cluster ${var.name}: tiered segments, broker volumes, admin secret"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Standard key policy: the account administers the key through IAM; the broker
        # role's own IAM policies grant it encrypt/decrypt through S3, and decrypt of the
        # admin secret through Secrets Manager, only.
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
    ]
  })

  tags = merge(local.common_tags, { Name = "${var.name}-strata" })
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${var.name}-strata"
  target_key_id = aws_kms_key.this[0].key_id
}

# ---------------------------------------------------------------------------
# S3 bucket for tiered segments.
# ---------------------------------------------------------------------------

resource "aws_s3_bucket" "segments" {
  #checkov:skip=CKV_AWS_21:Versioning is deliberately off: segment objects are immutable (unique key per upload) and remote retention must really delete them; versions would keep every deleted segment and its cost.
  #checkov:skip=CKV_AWS_144:Cross-region replication is not the durability model: S3 is already multi-AZ, and cross-region copies come from Strata's own mirror links (see examples/two-region-mirror).
  #checkov:skip=CKV_AWS_18:Server access logging needs a separate log bucket the operator owns; CloudTrail data events are the recommended audit trail and are account-level, outside this module.
  #checkov:skip=CKV2_AWS_62:Event notifications have no consumer: only brokers read and write this bucket.
  bucket        = var.bucket_name
  bucket_prefix = var.bucket_name == null ? "${var.name}-strata-" : null
  force_destroy = var.force_destroy_bucket

  tags = merge(local.common_tags, { Name = "${var.name}-strata-segments" })
}

resource "aws_s3_bucket_ownership_controls" "segments" {
  bucket = aws_s3_bucket.segments.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "segments" {
  bucket = aws_s3_bucket.segments.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "segments" {
  bucket = aws_s3_bucket.segments.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "segments" {
  bucket = aws_s3_bucket.segments.id

  versioning_configuration {
    # Off on purpose; see the checkov note on the bucket.
    status = "Disabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "segments" {
  bucket = aws_s3_bucket.segments.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }
}

resource "aws_s3_bucket_policy" "segments" {
  bucket = aws_s3_bucket.segments.id
  policy = local.bucket_policy

  # The public access block must exist first, or S3 may judge the policy on a bucket
  # that does not yet block public policies.
  depends_on = [aws_s3_bucket_public_access_block.segments]
}

locals {
  bucket_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [local.bucket_arn, "${local.bucket_arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        # Defence in depth beside the role's own IAM policy: even if someone attaches a
        # broader policy to the broker role, the bucket refuses it objects outside its prefix.
        Sid         = "BrokerRoleObjectsOnlyUnderPrefix"
        Effect      = "Deny"
        Principal   = { AWS = aws_iam_role.broker.arn }
        Action      = local.broker_object_actions
        NotResource = local.prefix_objects_arn
      },
      {
        Sid       = "BrokerRoleListsOnlyUnderPrefix"
        Effect    = "Deny"
        Principal = { AWS = aws_iam_role.broker.arn }
        Action    = "s3:ListBucket"
        Resource  = local.bucket_arn
        Condition = { StringNotLike = { "s3:prefix" = local.prefix_list_patterns } }
      },
    ]
  })
}
