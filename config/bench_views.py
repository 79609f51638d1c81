"""The benchmarks' baseline: a no-op JSON POST view on the same server, through the same
middleware (served only with BENCH_ENDPOINTS=1; see bench/api.py)."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def noop(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "echo": len(json.loads(request.body))})
