"""The HTTP API, for apps that cannot speak Redis (``pip install 'streamrec[http]'``).

``streamrec http`` serves, on 127.0.0.1:8000 by default:

- ``GET /users/{user}/recommendations?model=als&k=10``: the user's cached list (one
  ``GET``, as :class:`~streamrec.state.client.RecommendationClient` reads it), or the
  popular items the user does not have yet;
- ``GET /items/{item}/similar?model=als&k=10``: items whose vectors are closest (the served
  model, loaded read-only: no TensorFlow);
- ``POST /events``: one event or a list, each validated with :mod:`streamrec.events`; the
  valid ones go through a :class:`~streamrec.producer.Producer` and are delivered before
  the reply, which counts them and gives each rejected event's field, value and reason;
- ``GET /healthz`` (Redis ``PING``) and ``GET /metrics`` (Prometheus).

Errors are JSON: ``{"error": ..., "field": ..., "value": ..., "reason": ...}``.
Starlette and uvicorn are imported by :mod:`streamrec.http.app` and
:mod:`streamrec.http.server` only, never by ``import streamrec`` or the CLI's start-up.
"""
