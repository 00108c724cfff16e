// Ends the test output with one plain line, "N passed, N failed, N skipped", that any CI reads. A
// skipped or todo test fails the run: a suite that did not run has not passed.
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    console.log(`\n${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped`);
    if (skipped > 0 && !process.env.JEST_ALLOW_SKIPPED) {
      console.log("error: skipped tests count as failures here (set JEST_ALLOW_SKIPPED=1 for a focused local run)");
      process.exitCode = 1;
    }
  }
}

module.exports = SummaryReporter;
