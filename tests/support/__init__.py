"""What more than one test file (or a benchmark) uses: fakes of the outside systems, builders of
test data, and the running stack. Test files import from here, never from each other."""
