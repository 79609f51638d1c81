"""The operator's view, read-only: the dashboard's data (``overview``, over the rollup in
``activity``), the Prometheus metrics and the health probes (``metrics``). It reads the models,
the claims and the services; the services never import it. (The admin pages that show it are in
``telegram_tasks.admin``.)"""
