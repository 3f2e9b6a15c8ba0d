#!/usr/bin/env bash
# Debian packages the integration tests run as real services (see tests/services.py):
#   postfix  - for /usr/sbin/smtp-sink (and real bounce messages); no mail daemon is left running
#   swaks    - a real SMTP client
#   dnsmasq  - a real DNS server, started by tests on a loopback port
#   kcat     - a real Kafka client
#   wrk      - the HTTP load generator of bench/ (`make bench`)
#   nginx    - the webhook receiver of `python -m bench webhooks` (nginx-light; never left running)
#   chromium - the real browser of the web pages' tests (headless, driven by Playwright)
# Idempotent: installs only what is missing, runs `apt-get update` only when needed.
# Run as root on Debian 12 (bookworm). Exits non-zero on any failure.
set -euo pipefail

PACKAGES=(postfix swaks dnsmasq kcat wrk nginx-light chromium)
# Wait for another apt/dpkg run to finish instead of failing on its lock.
APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for package in "${PACKAGES[@]}"; do
    is_installed "$package" || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
    echo "install-test-deps: ${PACKAGES[*]} already installed"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "install-test-deps: missing ${missing[*]}; run as root: sudo bash $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# Update the package lists once, and only if a missing package has no install candidate.
needs_update=0
for package in "${missing[@]}"; do
    candidate=$(apt-cache policy "$package" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [[ -z "$candidate" || "$candidate" == "(none)" ]]; then
        needs_update=1
    fi
done
if ((needs_update)); then
    echo "install-test-deps: apt-get update"
    apt-get "${APT_OPTS[@]}" update -q
fi

# Postfix must not become this machine's MTA: no debconf questions, no configuration.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

# Keep maintainer scripts from starting postfix, dnsmasq or nginx (ports 25, 53 and 80).
created_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
remove_policy() {
    if ((created_policy)); then
        rm -f /usr/sbin/policy-rc.d
    fi
}
trap remove_policy EXIT

echo "install-test-deps: apt-get install ${missing[*]}"
apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${missing[@]}"

# Belt and braces: if a daemon was started anyway, stop it and keep it from coming back.
if [[ -d /run/systemd/system ]]; then
    for service in postfix dnsmasq nginx; do
        if systemctl list-unit-files "$service.service" >/dev/null 2>&1; then
            systemctl disable --now "$service.service" >/dev/null 2>&1 || true
        fi
    done
else
    for service in postfix dnsmasq nginx; do
        if [[ -x /etc/init.d/$service ]]; then
            /etc/init.d/"$service" stop >/dev/null 2>&1 || true
            update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    done
fi

for package in "${PACKAGES[@]}"; do
    if ! is_installed "$package"; then
        echo "install-test-deps: $package failed to install" >&2
        exit 1
    fi
done
if [[ ! -x /usr/sbin/smtp-sink ]]; then
    echo "install-test-deps: postfix is installed but /usr/sbin/smtp-sink is missing" >&2
    exit 1
fi
echo "install-test-deps: installed ${missing[*]}"
