#!/usr/bin/env bash
# Make a least-privilege kubeconfig for the rotator and store it in Secret Manager.
#
# The kubeconfig authenticates as the rotator's ServiceAccount (created by infra/modules/cluster-rbac or by
# `python infra/rbac/render.py ... | kubectl apply -f -`) with a BOUND token from `kubectl create token`:
# it can only get/patch/update the pull secret (and create it) in the target namespaces, and it expires.
#
# Usage:
#   infra/scripts/make-kubeconfig.sh --secret SECRET [--project PROJECT] [--duration 2160h]
#       [--context ADMIN_CONTEXT] [--namespace crusoe-system] [--service-account ccr-pull-secret-rotator]
#       [--server https://API-SERVER:6443] [--stdout]
#
#   --secret     Secret Manager secret id (or projects/P/secrets/S) that the function reads (module output
#                kubeconfig_secret_id). A new version is added; the function reads "latest", so no redeploy.
#   --duration   token lifetime (default 2160h = 90 days). The API server may cap it
#                (--service-account-max-token-expiration); the script prints the expiry it actually got.
#   --context    context of YOUR kubeconfig with rights to create tokens for the ServiceAccount (default:
#                current context). Only used here, never stored.
#   --server     API server URL as the function must reach it (default: the context's server).
#   --stdout     print the kubeconfig instead of storing it (it contains the token: handle with care).
#
# Renewal: the token expires after --duration. Re-run this script well before then (for example monthly with
# the default 90 days); the function picks up the new "latest" version at its next run. The old token stays
# valid until it expires; to cut it off at once, delete and re-create the ServiceAccount (the RoleBindings
# refer to it by name, so re-apply the RBAC), then run this script. Disable old secret versions with
# `gcloud secrets versions disable`.
#
# Needs: kubectl >= 1.24, gcloud (unless --stdout), base64, date.
set -euo pipefail

secret="" project="" duration="2160h" context="" namespace="crusoe-system"
service_account="ccr-pull-secret-rotator" server="" to_stdout=false

die() { printf 'make-kubeconfig: %s\n' "$*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --secret) secret="${2:?}"; shift 2 ;;
    --project) project="${2:?}"; shift 2 ;;
    --duration) duration="${2:?}"; shift 2 ;;
    --context) context="${2:?}"; shift 2 ;;
    --namespace) namespace="${2:?}"; shift 2 ;;
    --service-account) service_account="${2:?}"; shift 2 ;;
    --server) server="${2:?}"; shift 2 ;;
    --stdout) to_stdout=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[[ "${to_stdout}" == true || -n "${secret}" ]] || die "--secret is required (or --stdout)"
[[ "${duration}" =~ ^[0-9]+(h|m|s)$ ]] || die "--duration must look like 2160h, 90m or 3600s"

kubectl_args=()
[[ -n "${context}" ]] && kubectl_args+=(--context "${context}")

# Cluster address and CA of the admin context: the ServiceAccount's kubeconfig talks to the same API server.
cluster_field() { kubectl "${kubectl_args[@]}" config view --minify --raw -o "jsonpath={.clusters[0].cluster.$1}"; }
[[ -n "${server}" ]] || server="$(cluster_field server)"
[[ "${server}" == https://* ]] || die "API server ${server:-?} is not https://; pass --server"
ca_data="$(cluster_field certificate-authority-data)"
if [[ -z "${ca_data}" ]]; then
  ca_file="$(cluster_field certificate-authority)"
  [[ -n "${ca_file}" ]] && ca_data="$(base64 -w0 <"${ca_file}")"
fi

kubectl "${kubectl_args[@]}" -n "${namespace}" get serviceaccount "${service_account}" >/dev/null \
  || die "ServiceAccount ${namespace}/${service_account} not found: apply the RBAC first (infra/README.md)"

# The token goes from kubectl's stdout straight into the kubeconfig text; nothing is written to disk.
token="$(kubectl "${kubectl_args[@]}" -n "${namespace}" create token "${service_account}" --duration "${duration}")"
# The expiry the API server actually granted, read from the token's own claims (it may cap the duration).
payload="$(cut -d. -f2 <<<"${token}" | tr '_-' '/+')"
while (( ${#payload} % 4 )); do payload+="="; done
exp="$(base64 -d <<<"${payload}" 2>/dev/null | sed -n 's/.*"exp":\([0-9]*\).*/\1/p')"
expires_at="$(date -u -d "@${exp:-0}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)"

cluster_entry="    server: ${server}"
[[ -n "${ca_data}" ]] && cluster_entry+=$'\n'"    certificate-authority-data: ${ca_data}"

kubeconfig="apiVersion: v1
kind: Config
clusters:
- name: target
  cluster:
${cluster_entry}
users:
- name: ${service_account}
  user:
    token: ${token}
contexts:
- name: ccr-pull-secret-rotator
  context:
    cluster: target
    user: ${service_account}
    namespace: ${namespace}
current-context: ccr-pull-secret-rotator
"

if [[ "${to_stdout}" == true ]]; then
  printf '%s' "${kubeconfig}"
else
  gcloud_args=()
  [[ -n "${project}" ]] && gcloud_args+=(--project "${project}")
  printf '%s' "${kubeconfig}" | gcloud secrets versions add "${secret}" "${gcloud_args[@]}" --data-file=-
fi
printf 'make-kubeconfig: token for %s/%s expires at %s; re-run before then to renew.\n' \
  "${namespace}" "${service_account}" "${expires_at}" >&2
