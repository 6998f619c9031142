# Shared by scripts/run and scripts/test: make sure what the project needs is installed and
# running on this machine. Safe to run again; it only acts when something is missing.

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "please install: ${missing[*]} (no apt-get here)"
        return 1
    fi
    say "installing ${missing[*]}"
    if [ -z "$apt_updated" ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A C toolchain for librdkafka (built from source by the rdkafka crate) and the Rust toolchain.
ensure_build_tools() {
    apt_install build-essential pkg-config zlib1g-dev libssl-dev ca-certificates
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v cargo >/dev/null; then
        # No rustup here: Debian's rustc-web is a recent enough Rust from the package registry.
        apt_install rustc-web cargo-web
    fi
}

# A Java 17+ runtime for the Apache Kafka broker, and Maven to fetch it (scripts/kafka-dist).
ensure_java() {
    local major=0
    if command -v java >/dev/null; then
        major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
        major=${major%%.*}
    fi
    if [ "${major:-0}" -lt 17 ]; then
        apt_install openjdk-17-jre-headless
    fi
    command -v mvn >/dev/null || apt_install maven
}

# cargo-nextest runs the suite: a process per test, per-test timeouts, retries for the tests
# that are known to need them (.config/nextest.toml). Built from crates.io once.
ensure_nextest() {
    cargo nextest --version >/dev/null 2>&1 && return 0
    say "installing cargo-nextest (once; a few minutes)"
    cargo install cargo-nextest --locked --quiet
}

# Python tools the tests run, from PyPI, in a virtual environment outside git: aiosmtpd (the
# real SMTP server the notification tests send mail to), schemathesis and openapi-spec-validator
# (the OpenAPI test) and kubernetes-validate (the Kubernetes API schemas the manifests are
# checked against).
# Exports CONTENT_PROCESSOR_PYTHON.
ensure_python_tools() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/content-processor/python"
    if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null || ! "$venv/bin/st" --version 2>/dev/null | grep -q '4.32.5' \
        || ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q '1.37.0' \
        || ! "$venv/bin/pip" show openapi-spec-validator 2>/dev/null | grep -q '^Version: 0.7.2$'; then
        command -v python3 >/dev/null || apt_install python3
        python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
        say "installing aiosmtpd, schemathesis, openapi-spec-validator and kubernetes-validate into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6' 'schemathesis==4.32.5' \
            'openapi-spec-validator==0.7.2' 'kubernetes-validate==1.37.0'
    fi
    export CONTENT_PROCESSOR_PYTHON="$venv/bin/python"
}

# PostgreSQL on 127.0.0.1:5432 with trust auth for local connections (the default DATABASE_URL).
ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return 0
    fi
    apt_install postgresql postgresql-client
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$version" ]; then
        say "PostgreSQL is installed but has no cluster; create one with pg_createcluster"
        return 1
    fi
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 -p 5432 && break
        sleep 1
    done
    pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL did not start"; return 1; }
    # Local TCP connections as postgres without a password, as the default DATABASE_URL expects.
    if ! psql -h 127.0.0.1 -U postgres -c 'SELECT 1' >/dev/null 2>&1; then
        local hba
        hba="/etc/postgresql/$version/main/pg_hba.conf"
        say "allowing trusted local connections in $hba"
        as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
}
