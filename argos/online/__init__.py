"""The online detector over live metric streams: the detector, the HTTP service and the Redis
Streams consumer."""
