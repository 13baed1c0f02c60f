#!/usr/bin/env bash
# The Sax HTTP server tutorial's walk-through, against sax-gateway's HTTP/JSON API.
# Start the stack (`make up`), then:  examples/curl.sh [BASE_URL] [MODEL]
# Requests are the tutorial's, verbatim but for the model name: no Content-Type on /publish,
# a JSON body on `GET /listcell`. Each step prints the JSON response; any error stops it.
set -euo pipefail
base=${1:-localhost:8888}
model=${2:-/sax/test/lm2b}
curl=(curl --silent --show-error --fail-with-body)

echo "# GET / : who is there"
"${curl[@]}" "$base"
echo

echo "# POST /publish : publish the 2B test LM (random weights, served on CPU)"
"${curl[@]}" --request POST "$base/publish" --data '
{
    "model": "'"$model"'",
    "model_path": "saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest",
    "checkpoint": "None",
    "replicas": 1
}
'
echo

echo "# POST /wait_for_ready : until a replica serves it"
"${curl[@]}" --request POST "$base/wait_for_ready" --data '{"model": "'"$model"'"}'
echo

echo "# GET /listcell : its definition and replicas"
"${curl[@]}" --request GET "$base/listcell" --data '
{
    "model": "'"$model"'"
}
'
echo

echo "# POST /generate"
"${curl[@]}" --request POST --header "Content-type: application/json" "$base/generate" \
  --data '{"model": "'"$model"'", "query": "Q: Who is Harry Potter'"'"'s mom? A: "}'
echo

echo "# POST /unpublish"
"${curl[@]}" --request POST "$base/unpublish" --data '{"model": "'"$model"'"}'
echo
