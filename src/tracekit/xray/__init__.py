"""The X-Ray side of tracekit: segment documents, the daemon protocol, and the senders."""
