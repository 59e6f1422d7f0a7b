#!/bin/sh
# The demo stack's front (a config of the stack, mounted at /front.sh): serves on $PORT what the backend
# answered last. The backend is found by its short name "backend": the task's resolv.conf searches the
# stack's domain, and the swarm's DNS answers backend.demo with the VIP of demo_backend.
# (busybox wget -T crashes in Debian's static busybox 1.35: timeout(1) bounds it instead.)
echo "$WHO: no answer from the backend yet" > /tmp/index.html
busybox httpd -f -p "$PORT" -h /tmp &
while true; do
  addr=$(busybox nslookup backend 2>/dev/null | busybox awk '/^Address/ && !/:53$/ {a = $NF} END {print a}')
  if [ -n "$addr" ] && busybox timeout 3 busybox wget -q -O /tmp/backend.txt "http://$addr/"; then
    echo "$WHO asked backend ($addr): $(cat /tmp/backend.txt)" > /tmp/index.new
    busybox mv /tmp/index.new /tmp/index.html
  fi
  sleep 2
done
