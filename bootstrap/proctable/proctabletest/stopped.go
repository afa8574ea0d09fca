package proctabletest

import (
	"fmt"
	"os"
	"strings"
)

// Stopped reports whether every thread of pid is stopped (state T in
// /proc/<pid>/task/<tid>/stat): a SIGSTOP has taken effect, not merely been sent.
func Stopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		// the command name in parentheses may hold spaces and ')': the state follows the last ')'
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i <= 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false
		}
	}
	return true
}
