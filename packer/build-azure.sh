#!/bin/bash
# Builds the gVisor node image in Azure and publishes it as an Azure Compute Gallery
# image version (and, with MANAGED_IMAGE_NAME, also a managed image). `make azure-image` runs
# it. It uses YOUR credentials: log in with `az login` first, or export a service
# principal as ARM_CLIENT_ID / ARM_CLIENT_SECRET / ARM_TENANT_ID.
#
# Required environment:
#   AZURE_SUBSCRIPTION_ID   subscription of the build and the gallery
#   AZURE_RESOURCE_GROUP    resource group of the gallery
#   AZURE_GALLERY           gallery name
#   AZURE_IMAGE_DEFINITION  image definition (Linux, generalized, Hyper-V gen V2), e.g.
#                           az sig image-definition create -g RG -r GALLERY -i ubuntu-2204-gvisor \
#                             --publisher me --offer gvisor-node --sku 2204 --os-type Linux --hyper-v-generation V2
#   IMAGE_VERSION           version to publish, MAJOR.MINOR.PATCH, e.g. 1.0.0
# Optional:
#   BASE=ubuntu-2204|ubuntu-2404   base image and containerd (default ubuntu-2204: containerd 1.7)
#   CONTAINERD_SHA256              required with ubuntu-2404 (pins the containerd 2.x tarball)
#   LOCATION (westeurope)  REPLICATION_REGIONS (comma-separated, default LOCATION)
#   VM_SIZE (Standard_D2s_v5)  MANAGED_IMAGE_NAME  TAGS_JSON ('{"team":"x"}')
#   BINARY (bin/gvisor-bootstrap-linux-amd64; built with `make build-all` if missing)
#   CONFIG (the tool config to bake in; default: `gvisor-bootstrap render config` defaults)
#   RELEASE_DIR (a local gVisor release directory to install from instead of the bucket)
#   DRY_RUN=1 prints the packer commands instead of running them.
#   VALIDATE=1 runs `packer validate` with the same variables instead of building: no
#     credentials, no plugins needed (Debian's packer 1.6.6 works; it needs
#     MANAGED_IMAGE_NAME because its built-in azure-arm publishes to a gallery only
#     through a managed image). The test suite uses this.
set -euo pipefail
offline=${DRY_RUN:-${VALIDATE:-}} # no credentials, packer version or binary needed
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
fail() { echo "build-azure: $*" >&2; exit 2; }

missing=()
for v in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_GALLERY AZURE_IMAGE_DEFINITION IMAGE_VERSION; do
  [[ -n ${!v:-} ]] || missing+=("$v")
done
if ((${#missing[@]})); then
  fail "missing ${missing[*]}: set them in the environment (see the header of packer/build-azure.sh and packer/README.md)"
fi
[[ $IMAGE_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "IMAGE_VERSION=$IMAGE_VERSION: want MAJOR.MINOR.PATCH, e.g. 1.0.0"

base=${BASE:-ubuntu-2204}
varfile=$here/vars/$base.pkrvars.hcl
[[ -f $varfile ]] || fail "BASE=$base: want ubuntu-2204 or ubuntu-2404 (no $varfile)"
extra=()
if [[ $base == ubuntu-2404 ]]; then
  [[ ${CONTAINERD_SHA256:-} =~ ^[0-9a-f]{64}$ ]] ||
    fail "BASE=ubuntu-2404 installs containerd 2.x from its release tarball: set CONTAINERD_SHA256 to its sha256 (the .sha256sum file next to it on the release page)"
  extra+=(-var "containerd_sha256=$CONTAINERD_SHA256")
fi

if [[ -z ${ARM_CLIENT_ID:-} ]]; then
  if [[ -z $offline ]]; then
    command -v az >/dev/null || fail "no credentials: install the Azure CLI and run 'az login', or export ARM_CLIENT_ID, ARM_CLIENT_SECRET and ARM_TENANT_ID"
    az account show >/dev/null 2>&1 || fail "the Azure CLI is not logged in: run 'az login' (or export ARM_CLIENT_ID, ARM_CLIENT_SECRET and ARM_TENANT_ID)"
  fi
  auth=(-var use_azure_cli_auth=true)
else
  [[ -n ${ARM_CLIENT_SECRET:-} && -n ${ARM_TENANT_ID:-} ]] || fail "ARM_CLIENT_ID is set: also export ARM_CLIENT_SECRET and ARM_TENANT_ID"
  auth=(-var use_azure_cli_auth=false -var "client_id=$ARM_CLIENT_ID" -var "client_secret=$ARM_CLIENT_SECRET" -var "tenant_id=$ARM_TENANT_ID")
fi

if [[ -z $offline ]]; then
  command -v packer >/dev/null || fail "packer is not installed (https://developer.hashicorp.com/packer/install; >= 1.7)"
  ver=$(packer version | head -1 | sed -E 's/^Packer v?([0-9]+)\.([0-9]+).*/\1 \2/')
  read -r major minor <<<"$ver"
  if ((major < 1 || (major == 1 && minor < 7))); then
    fail "packer $major.$minor is too old to build (it only validates the templates): install packer >= 1.7 for 'packer init'"
  fi
fi

binary=${BINARY:-$repo/bin/gvisor-bootstrap-linux-amd64}
if [[ ! -x $binary && -z $offline ]]; then
  make -C "$repo" build-all
fi
config=${CONFIG:-}
if [[ -z $config && -n $offline ]]; then
  config=$repo/manifests/config.toml # the committed defaults
elif [[ -z $config ]]; then
  config=$(mktemp)
  trap 'rm -f "$config"' EXIT
  empty=$(mktemp -d)
  "$binary" render config --root "$empty" -o "$config" # built-in defaults only
  rmdir "$empty"
fi

location=${LOCATION:-westeurope}
regions=${REPLICATION_REGIONS:-$location}
regions_hcl=$(printf '"%s",' ${regions//,/ })
vars=(
  -var "subscription_id=$AZURE_SUBSCRIPTION_ID"
  -var "resource_group=$AZURE_RESOURCE_GROUP"
  -var "gallery_name=$AZURE_GALLERY"
  -var "image_definition=$AZURE_IMAGE_DEFINITION"
  -var "image_version=$IMAGE_VERSION"
  -var "location=$location"
  -var "replication_regions=[${regions_hcl%,}]"
  -var "vm_size=${VM_SIZE:-Standard_D2s_v5}"
  -var "managed_image_name=${MANAGED_IMAGE_NAME:-}"
  -var "binary_path=$binary"
  -var "config_path=$config"
  -var "release_dir=${RELEASE_DIR:-}"
)
if [[ -n ${TAGS_JSON:-} ]]; then
  vars+=(-var "tags=$TAGS_JSON")
fi

run() {
  if [[ -n ${DRY_RUN:-} ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}
if [[ -n ${VALIDATE:-} ]]; then
  exec packer validate -var-file="$varfile" "${vars[@]}" "${extra[@]}" "${auth[@]}" "$here/image"
fi
run packer init "$here/plugins.pkr.hcl"
run packer build -only=azure-arm.ubuntu -var-file="$varfile" "${vars[@]}" "${extra[@]}" "${auth[@]}" "$here/image"
