"""Jobs in Redis: the job record and its lifecycle, the Lua scripts that change it atomically,
and the results file read from it. API and workers share this one serialisation."""
