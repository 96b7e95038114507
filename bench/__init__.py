"""Benchmark: rotation cost at 10 to 1,000 namespaces, side by side with the baseline and raw capacity.

``make bench`` (or ``python -m bench``) starts one local control plane (etcd + kube-apiserver) and the
Crusoe API emulator, and for each N creates N fresh namespaces and three least-privilege ServiceAccounts
(rotator, baseline, raw client: each with its own secret name, so they never touch each other's
secrets), then measures in the same run, interleaved repeat by repeat so that drift hits all three alike:

- **rotation**: the real function in a ``functions-framework`` process, called over HTTP; the first call
  creates the secrets, the reported figure is the median of the later (steady-state) calls;
- **baseline**: the Helm chart's sequential read-then-replace algorithm (``bench/baseline.py``);
- **raw**: the same GET + apply-PATCH per namespace with no logic (``bench/raw.py``).

Write requests are counted from the apiserver's own ``apiserver_request_total`` metric, Crusoe calls
from the emulator's request log, peak RSS from ``VmHWM`` of the function's process tree, CPU seconds of
each process from ``/proc``. It is a program that measures and reports, not a test: it asserts nothing
about the goals, it prints them met or not. Results go to ``bench/results/latest.json`` and a chart.

``--rtt-ms 0,2,10`` runs the optional **latency scenario** instead: for each round-trip time, a fresh control
plane, and the three contenders reach kube-apiserver through the delay layer of ``devkit/faultproxy.py`` (the
project's fault proxy), which delays each direction by half the RTT. In production the function talks to a
remote apiserver, where round trips, not this machine's two cores, dominate; loopback alone cannot show that.
Setup, request counting, kube-apiserver to etcd and the Crusoe emulator stay undelayed. Results go to
``bench/results/latency.json`` (the same per-run fields plus ``rtt_ms`` and the measured delay) and
``docs/benchmarks-latency.png``. Why a proxy and not ``tc netem``: see ``devkit/faultproxy.py``.
Modules, in the order a run goes through them: ``cli`` (options), ``run`` (the one runner, for both
scenarios), ``scenarios`` (control plane, emulator, delay proxy), ``contenders`` (namespaces, accounts,
the function), ``measure`` (rounds and their summary), ``accounting`` (``/proc`` and the apiserver's
request counter), ``results`` (typed records, goals, JSON), ``report`` (JSON file, table, charts);
``baseline`` and ``raw`` are the baseline and the raw client (the latency proxy is ``devkit/faultproxy.py``);
``pyspy`` the ``--profile`` option.

``--scenario wide|fleet|dryrun-status|events`` runs one of issue 10's **fleet scenarios** instead
(``bench/fleet.py``): ``TARGET_NAMESPACES=*`` over 10,000 namespaces, 4 clusters against 1 at 10 ms RTT, a
dry run and a status call against a rotation, and ``EVENTS=all`` against ``EVENTS=failures``. Each compares
named contenders side by side, interleaved round by round (``side_by_side``), with issue 10's goals as
ratios of medians (``fleet_scenarios``); results go to ``bench/results/<scenario>.json`` and
``docs/benchmarks-<scenario>.png``.
"""
