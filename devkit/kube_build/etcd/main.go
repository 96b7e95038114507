// Command etcd is etcd's own server entry point, built from the etcd server
// module so the test control plane does not depend on a distribution's etcd
// package (Debian's is 3.4, too old for a current kube-apiserver's watches).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
