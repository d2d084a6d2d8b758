"""mitmdump / mitmweb entry script for dap-faultrun.

    mitmdump -s proxy_addons/faultproxy.py \
        --mode reverse:http://127.0.0.1:9001@127.0.0.1:8081 \
        --mode reverse:https://127.0.0.1:9002@127.0.0.1:8082 --set ssl_insecure=true \
        --set faultrun_links=8081=client->leader,8082=leader->helper \
        --set faultrun_plan=plan.toml --set faultrun_history=history.jsonl \
        --set client_replay_concurrency=-1 -w flows.mitm

Options: see :mod:`proxy_addons.addon`. Also registers the DAP content view.
"""

from proxy_addons import contentview  # noqa: F401 - registers the DAP content view on import
from proxy_addons.addon import FaultProxyAddon

addons = [FaultProxyAddon()]
