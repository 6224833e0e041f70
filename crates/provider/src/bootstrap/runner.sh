#!/bin/bash
# mayfly runner bootstrap: cloud-init runs this once at first boot. It installs (or finds) the
# GitHub Actions runner, runs one job with a single-use credential, and powers the machine off;
# mayfly deletes or recycles machines that are off. The runner credential is in this file:
# never trace it (no `set -x`) and never print it.
#
# A template: mayfly fills in the @NAME@ placeholders (crates/provider/src/bootstrap/mod.rs).
# Functions are called from traps and from the blocks mayfly fills in, out of shellcheck's sight:
# shellcheck disable=SC2317
set -euo pipefail

readonly RUNNER_USER='@RUNNER_USER@'
readonly RUNNER_DIR='@RUNNER_DIR@'
# Empty when the runner is already in the image at RUNNER_DIR: then nothing is downloaded.
readonly RUNNER_URL='@RUNNER_URL@'
readonly RUNNER_SHA256='@RUNNER_SHA256@'

# @COMMON@

install_runner() {
    if [[ -z $RUNNER_URL ]]; then
        if [[ ! -x "${RUNNER_DIR}/run.sh" || ! -x "${RUNNER_DIR}/config.sh" ]]; then
            log "no runner in the image at ${RUNNER_DIR}"
            exit 1
        fi
        log "using the runner in the image at ${RUNNER_DIR}"
        chown -R "${RUNNER_USER}:" "$RUNNER_DIR"
        return
    fi
    require curl sha256sum tar
    local tarball
    tarball=$(mktemp -t actions-runner.XXXXXX)
    log "downloading ${RUNNER_URL}"
    if ! download "$RUNNER_URL" "$tarball"; then
        log "could not download the runner"
        exit 1
    fi
    verify_sha256 runner "$RUNNER_SHA256" "$tarball"
    install -d -o "$RUNNER_USER" -m 0755 "$RUNNER_DIR"
    tar -xzf "$tarball" -C "$RUNNER_DIR"
    rm -f "$tarball"
    chown -R "${RUNNER_USER}:" "$RUNNER_DIR"
}

# The runner is a .NET program: it needs ICU, Kerberos, OpenSSL and zlib. Images without ICU (the
# usual gap) get them from the runner's own installer, which knows each distribution's packages.
install_dependencies() {
    local libraries
    libraries=$(ldconfig -p 2>/dev/null || true)
    if [[ $libraries == *libicuuc.so* ]]; then
        return
    fi
    log "installing the runner's dependencies"
    "${RUNNER_DIR}/bin/installdependencies.sh"
}


main() {
    log "starting"
    require useradd runuser getent
    ensure_user
    install_runner
    run_setup
    install_dependencies
    close_metadata
    cd "$RUNNER_DIR"
    start_runner
    log "the runner has exited"
}

main
