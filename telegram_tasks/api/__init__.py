"""The provider API: the HTTP surface providers call (views, serializers, parsers, token
authentication, the error envelope, the fast path for single reports, the schema and docs, the
routes), the long-poll waiting that holds pulls open, and the push transport that POSTs tasks to
providers. It calls ``telegram_tasks.services``; the services never import it."""
