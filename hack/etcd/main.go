// Command etcd is the etcd server, built from the Go module proxy for Leitstand's
// local control plane. etcd's own root module carries replace directives that
// `go install` refuses, so this module imports the server package and calls its
// entry point instead. Debian's etcd 3.4 is too old for kube-apiserver's
// watch-progress requests; this builds 3.6.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
