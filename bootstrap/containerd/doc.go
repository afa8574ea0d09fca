// Package containerd registers the runsc runtime handler in containerd's config in
// whatever dialect the node uses, changing nothing else.
//
// The dialect (config `version` and the CRI plugin table names actually present) is
// read from the file itself: AKS's containerd 2 nodes write `version = 2` with the
// containerd 2 table names, and a runtime added under the old names there is silently
// dropped by containerd's migration. The editor works on the file's text: it removes
// every statement that defines keys under the managed handlers and inserts one
// canonical block, so comments, order, quoting and dotted keys elsewhere survive byte
// for byte. Every edit is checked before it is returned: the result must parse, hold
// the wanted runtime, and equal the input everywhere else.
package containerd
