# Sourced by the test and benchmark scripts: installs the test venv (scripts/requirements-test.txt)
# if needed, starts moto server on a free loopback port, waits until it answers, points the AWS
# SDK at it (DynamoDB, SQS, SSM Parameter Store and Secrets Manager) with fake credentials, and stops it when the calling script exits.
# After sourcing: $venv, $moto_port, $moto_pid, and the venv's bin first on PATH.

venv="${WSHUB_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
export PATH="$PWD/$venv/bin:$PATH"

mkdir -p target
moto_port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"target/moto-$moto_port.log" 2>&1 &
moto_pid=$!
stop_moto() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap stop_moto EXIT

"$venv/bin/python" - "$moto_port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/moto-api/"
for _ in range(150):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit(f"moto server did not answer on {url}; see target/moto-*.log")
PY
echo "moto server on 127.0.0.1:$moto_port" >&2

# Fake credentials and a region for the SDK; nothing here may reach real AWS.
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL_SSM="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL_SECRETS_MANAGER="http://127.0.0.1:$moto_port"
export AWS_ENDPOINT_URL_EVENTBRIDGE="http://127.0.0.1:$moto_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL || true
export AWS_EC2_METADATA_DISABLED=true
