# ---------------------------------------------------------------------------
# Security: closed by default.
#
#   - clients: SASL_SSL on 9092 (TLS + SCRAM), unless client_security_protocol opts out;
#   - brokers among themselves (INTERNAL, 9094) and the controller quorum (CONTROLLER,
#     9093): SSL with client certificates required (mutual TLS);
#   - certificates: each broker makes its own key at first boot, sends a CSR to ACM
#     Private CA with its instance role and gets its certificate back. The key never
#     leaves the instance; the user data holds no key material;
#   - the first admin: a SCRAM credential bootstrapped by `strata format --add-scram`
#     from a Secrets Manager secret (KMS-encrypted) that only the broker role may read.
#     The user data names the secret, never its value.
# ---------------------------------------------------------------------------

locals {
  create_ca = var.create_private_ca

  # Through the installed CA certificate, so brokers boot only once the CA is active.
  private_ca_arn               = local.create_ca ? aws_acmpca_certificate_authority_certificate.this[0].certificate_authority_arn : var.private_ca_arn
  private_ca_region            = local.create_ca ? local.region : split(":", var.private_ca_arn)[3]
  private_ca_signing_algorithm = local.create_ca ? "SHA256WITHECDSA" : var.private_ca_signing_algorithm
  # An existing CA may live in another region than this module's provider, so the module
  # does not read it; its owner hands out its certificate (or the brokers' ca.pem).
  ca_certificate_pem      = local.create_ca ? aws_acmpca_certificate.root[0].certificate : null
  end_entity_template_arn = "arn:${local.partition}:acm-pca:::template/EndEntityCertificate/V1"

  # Every broker's certificate has this subject; with the default principal mapping the
  # brokers' principal on the mutual-TLS listeners is User:CN=<name>-broker.
  broker_certificate_cn = "${var.name}-broker"
  broker_principal      = "User:CN=${local.broker_certificate_cn}"
  admin_principal       = "User:${var.admin_username}"
  super_users           = join(";", concat([local.admin_principal, local.broker_principal], var.extra_super_users))

  # Where the user data puts the key material (0600, owner strata; ReadOnlyPaths of the unit).
  tls_dir              = "/etc/strata/tls"
  ssl_certificate_path = "${local.tls_dir}/broker.pem"
  ssl_key_path         = "${local.tls_dir}/broker.key"
  ssl_truststore_path  = "${local.tls_dir}/ca.pem"

  admin_secret_arn = aws_secretsmanager_secret.admin.arn

  # Every secret the brokers read at boot: the admin's, the extra SCRAM users' and the
  # mirror links' source passwords.
  boot_secret_arns = concat(
    [local.admin_secret_arn],
    [for u in var.extra_scram_users : u.secret_arn],
    [for l in var.mirror_links : l.source_password_secret_arn],
  )
  only_admin_secret = length(local.boot_secret_arns) == 1
  # A single ARN stays a string in the policy (the shape IAM shows back).
  boot_secrets_json = jsondecode(local.only_admin_secret ? jsonencode(local.admin_secret_arn) : jsonencode(local.boot_secret_arns))
}

# --- ACM Private CA (unless private_ca_arn is given) --------------------------------

resource "aws_acmpca_certificate_authority" "this" {
  count = local.create_ca ? 1 : 0

  type                            = "ROOT"
  usage_mode                      = "GENERAL_PURPOSE"
  permanent_deletion_time_in_days = 7

  certificate_authority_configuration {
    key_algorithm     = "EC_prime256v1"
    signing_algorithm = "SHA256WITHECDSA"

    subject {
      common_name  = "${var.name} Strata CA"
      organization = "Strata"
    }
  }

  tags = merge(local.common_tags, { Name = "${var.name}-strata-ca" })
}

resource "aws_acmpca_certificate" "root" {
  count = local.create_ca ? 1 : 0

  certificate_authority_arn   = aws_acmpca_certificate_authority.this[0].arn
  certificate_signing_request = aws_acmpca_certificate_authority.this[0].certificate_signing_request
  signing_algorithm           = "SHA256WITHECDSA"
  template_arn                = "arn:${local.partition}:acm-pca:::template/RootCACertificate/V1"

  validity {
    type  = "YEARS"
    value = 10
  }
}

resource "aws_acmpca_certificate_authority_certificate" "this" {
  count = local.create_ca ? 1 : 0

  certificate_authority_arn = aws_acmpca_certificate_authority.this[0].arn
  certificate               = aws_acmpca_certificate.root[0].certificate
  certificate_chain         = aws_acmpca_certificate.root[0].certificate_chain
}

# --- the first admin's SCRAM password -----------------------------------------------

# Unless one is supplied, a fresh 32-character password from Secrets Manager. It is
# written into the secret only when admin_password_version changes (a write-only
# attribute, so the resource's state never holds it). The data source's own result does
# sit in the state (sensitive), as random_password's would, until the next apply reads a
# fresh one, which is then no longer the live password. (An ephemeral resource would
# keep it out entirely, but `terraform test` cannot mock ephemeral resources yet.)
data "aws_secretsmanager_random_password" "admin" {
  count = nonsensitive(var.admin_password == null) ? 1 : 0

  password_length     = 32
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "admin" {
  #checkov:skip=CKV2_AWS_57:Rotating the admin password means changing the SCRAM credential inside the cluster (strata users), which no Secrets Manager rotation function does; the module README gives the rotation runbook.
  name_prefix             = "${var.name}/strata/admin-"
  description             = "Strata cluster ${var.name}: SCRAM password of the first admin (${var.admin_username}), bootstrapped at format time."
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.admin_secret_recovery_window_days

  tags = merge(local.common_tags, { "strata:scram-user" = var.admin_username })
}

resource "aws_secretsmanager_secret_version" "admin" {
  secret_id                = aws_secretsmanager_secret.admin.id
  secret_string_wo         = var.admin_password != null ? var.admin_password : data.aws_secretsmanager_random_password.admin[0].random_password
  secret_string_wo_version = var.admin_password_version
}

# --- what the brokers may do: read that one secret, get certificates from that one CA ---

locals {
  security_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = local.only_admin_secret ? "ReadAdminSecret" : "ReadBootSecrets"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = local.boot_secrets_json
      },
      {
        Sid      = local.only_admin_secret ? "DecryptAdminSecretThroughSecretsManager" : "DecryptBootSecretsThroughSecretsManager"
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = local.kms_key_arn
        Condition = {
          StringEquals = {
            "kms:ViaService"                  = "secretsmanager.${local.region}.amazonaws.com"
            "kms:EncryptionContext:SecretARN" = local.boot_secrets_json
          }
        }
      },
      {
        Sid       = "IssueBrokerCertificates"
        Effect    = "Allow"
        Action    = "acm-pca:IssueCertificate"
        Resource  = local.private_ca_arn
        Condition = { StringEquals = { "acm-pca:TemplateArn" = local.end_entity_template_arn } }
      },
      {
        Sid      = "ReadBrokerCertificatesAndCa"
        Effect   = "Allow"
        Action   = ["acm-pca:GetCertificate", "acm-pca:GetCertificateAuthorityCertificate"]
        Resource = local.private_ca_arn
      },
    ]
  })
}

resource "aws_iam_role_policy" "security" {
  name   = "strata-security"
  role   = aws_iam_role.broker.id
  policy = local.security_policy
}

# PLAINTEXT clients are an explicit opt-out; say so on every plan.
check "client_listener_is_plaintext" {
  assert {
    condition     = var.client_security_protocol != "PLAINTEXT"
    error_message = "client_security_protocol = \"PLAINTEXT\": clients of cluster ${var.name} connect unencrypted and unauthenticated on port 9092, and every principal may do everything for which no ACL exists. Use it only for throwaway clusters."
  }
}
