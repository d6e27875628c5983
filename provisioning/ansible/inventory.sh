#!/usr/bin/env bash
# Ansible dynamic inventory from the home-server inventory (hs-provision inventory --ansible).
#   ansible-playbook -i provisioning/ansible/inventory.sh provisioning/site.yml
# HS_INVENTORY: the inventory file (default: provisioning/inventory.yml next to this directory).
# HS_PROVISION: the hs-provision binary (default: hs-provision on PATH, from the package).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "${HS_PROVISION:-hs-provision}" inventory --ansible --inventory "${HS_INVENTORY:-$here/../inventory.yml}" "$@"
