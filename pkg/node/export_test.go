package node

// StuckCalls is how many of m's bounded calls (bounded.go) have not
// returned yet, for the tests of package node_test.
func StuckCalls(m Mounter) int { return m.(*mounter).calls.stuck() }
