"""The fields of every response object, as ``listApis`` lists them (name, type, description), CloudStack's
way: a client or schema generator learns from ``listApis`` what each command answers.

``OBJECTS`` names, for each response item key, what it is and its fields in the order the views write
them; ``GLOSSARY`` gives each field name its type and description (``{what}`` is the object's noun), with
``OVERRIDES`` where one object's field differs. A test renders every view on a populated cloud and checks
that each field it writes is declared here, so this stays true to what the API answers.
"""

from __future__ import annotations

from typing import Any

ASYNC_FIELDS = ("jobid", "jobstatus")  # what an async command's result carries besides its object

GLOSSARY: dict[str, tuple[str, str]] = {
    "id": ("string", "the {what}'s id"),
    "name": ("string", "the {what}'s name"),
    "displayname": ("string", "the {what}'s display name"),
    "displaytext": ("string", "the {what}'s description"),
    "description": ("string", "the {what}'s description"),
    "state": ("string", "the {what}'s state"),
    "created": ("date", "when the {what} was created"),
    "lastupdated": ("date", "when the {what} last changed"),
    "tags": ("list", "the {what}'s tags"),
    "details": ("map", "the {what}'s details (key/value pairs)"),
    "type": ("string", "the {what}'s type"),
    "path": ("string", "the {what}'s path"),
    "scope": ("string", "the {what}'s scope"),
    "version": ("string", "the {what}'s software version"),
    "isdefault": ("boolean", "whether it is the default {what}"),
    "hasannotations": ("boolean", "whether the {what} has comments"),
    # where: zone, pod, cluster, host, pool
    "zoneid": ("string", "the id of the {what}'s zone"),
    "zonename": ("string", "the name of the {what}'s zone"),
    "podid": ("string", "the id of the {what}'s pod"),
    "podname": ("string", "the name of the {what}'s pod"),
    "clusterid": ("string", "the id of the {what}'s cluster"),
    "clustername": ("string", "the name of the {what}'s cluster"),
    "clustertype": ("string", "the cluster's type (CloudManaged)"),
    "hostid": ("string", "the id of the host the {what} is on"),
    "hostname": ("string", "the name of the host the {what} is on"),
    "storageid": ("string", "the id of the storage pool the {what} is on"),
    "storage": ("string", "the name of the storage pool the {what} is on"),
    "storagetype": ("string", "shared or local storage"),
    "allocationstate": ("string", "Enabled or Disabled: whether new VMs may be placed in the {what}"),
    "managedstate": ("string", "Managed or Unmanaged"),
    "hypervisor": ("string", "the hypervisor (KVM or Simulator)"),
    "hypervisortype": ("string", "the hypervisor (KVM or Simulator)"),
    "hypervisorversion": ("string", "the hypervisor's version"),
    # ownership
    "account": ("string", "the {what}'s account"),
    "accountid": ("string", "the id of the {what}'s account"),
    "accounttype": ("integer", "the account's type: 0 user, 1 root admin, 2 domain admin"),
    "roletype": ("string", "the role's type: Admin, DomainAdmin or User"),
    "domainid": ("string", "the id of the {what}'s domain"),
    "domain": ("string", "the name of the {what}'s domain"),
    "domainpath": ("string", "the path of the {what}'s domain"),
    "userid": ("string", "the id of the user"),
    "username": ("string", "the user's login name"),
    "user": ("list", "the account's users"),
    # zones, pods, networks
    "networktype": ("string", "Basic or Advanced"),
    "dns1": ("string", "the first DNS server"),
    "dns2": ("string", "the second DNS server"),
    "securitygroupsenabled": ("boolean", "whether security groups are on"),
    "localstorageenabled": ("boolean", "whether VMs may use host-local storage"),
    "gateway": ("string", "the gateway"),
    "netmask": ("string", "the netmask"),
    "cidr": ("string", "the network's CIDR"),
    "startip": ("string", "the first address of the range"),
    "endip": ("string", "the last address of the range"),
    "vlan": ("string", "the VLAN (or untagged)"),
    "broadcasturi": ("string", "the broadcast URI (vlan://N, vxlan://N or vlan://untagged)"),
    "broadcastdomaintype": ("string", "Vlan, Vxlan or Native"),
    "traffictype": ("string", "the traffic type (Guest)"),
    "acltype": ("string", "Domain (shared) or Account (isolated)"),
    "canusefordeploy": ("boolean", "whether VMs may be deployed on it"),
    "ispersistent": ("boolean", "whether it is implemented before a VM needs it"),
    "issystem": ("boolean", "whether it is for system VMs"),
    "specifyipranges": ("boolean", "whether IP ranges are given at creation"),
    "specifyvlan": ("boolean", "whether a VLAN is given at creation"),
    "networkofferingid": ("string", "the id of the network's offering"),
    "networkofferingname": ("string", "the name of the network's offering"),
    "service": ("list", "the services the {what} offers"),
    "provider": ("list", "the providers of the service"),
    "guestiptype": ("string", "Shared or Isolated"),
    "conservemode": ("boolean", "whether conserve mode is on"),
    "forvpc": ("boolean", "whether it is for VPC networks"),
    "egressdefaultpolicy": ("boolean", "whether egress is allowed by default"),
    "supportspublicaccess": ("boolean", "whether public access is supported"),
    "networkrate": ("integer", "the data rate limit in Mb/s (-1: none)"),
    "networkid": ("string", "the id of the network"),
    "networkname": ("string", "the name of the network"),
    # hosts and capacity
    "resourcestate": ("string", "Enabled, Disabled, PrepareForMaintenance, Maintenance..."),
    "ipaddress": ("string", "the {what}'s IP address"),
    "hosttags": ("string", "the tags a host must have (comma-separated)"),
    "cpunumber": ("integer", "the number of vCPUs"),
    "cpuspeed": ("integer", "the speed of each vCPU in MHz"),
    "cpuallocated": ("string", "the share of CPU allocated to VMs, as a percentage"),
    "cpuallocatedvalue": ("long", "the CPU allocated to VMs in MHz"),
    "cpuused": ("string", "the share of CPU in use, as a percentage"),
    "memory": ("integer", "the memory in MiB"),
    "memorytotal": ("long", "the host's memory in bytes"),
    "memoryallocated": ("long", "the memory allocated to VMs in bytes"),
    "memoryused": ("long", "the memory in use in bytes"),
    "islocalstorageactive": ("boolean", "whether the host's local storage is in use"),
    "lastpinged": ("date", "when the host last answered a ping"),
    "disconnected": ("date", "when the host last disconnected"),
    "managementserverid": ("string", "the id of the management server that holds its connection"),
    "events": ("string", "the host status events"),
    "cpuovercommitratio": ("string", "the CPU overprovisioning factor"),
    "memoryovercommitratio": ("string", "the memory overprovisioning factor"),
    "capacitytotal": ("long", "the total capacity"),
    "capacityused": ("long", "the capacity used"),
    "percentused": ("string", "the share used, as a percentage"),
    # storage
    "disksizetotal": ("long", "the pool's size in bytes"),
    "disksizeallocated": ("long", "the bytes allocated to volumes"),
    "disksizeused": ("long", "the bytes in use"),
    "overprovisionfactor": ("string", "the storage overprovisioning factor"),
    "size": ("long", "the size in bytes"),
    "disksize": ("long", "the size of the disk in GiB"),
    "deviceid": ("long", "the device id on the VM"),
    "virtualmachineid": ("string", "the id of the VM"),
    "vmname": ("string", "the name of the VM it is attached to"),
    "vmdisplayname": ("string", "the display name of the VM it is attached to"),
    "vmstate": ("string", "the state of the VM it is attached to"),
    "attached": ("date", "when it was attached"),
    "destroyed": ("boolean", "whether it is destroyed"),
    "isextractable": ("boolean", "whether it may be downloaded"),
    "diskofferingid": ("string", "the id of the disk offering"),
    "diskofferingname": ("string", "the name of the disk offering"),
    "diskofferingdisplaytext": ("string", "the description of the disk offering"),
    "provisioningtype": ("string", "thin, sparse or fat"),
    "cacheMode": ("string", "the disk's cache mode: none, writeback or writethrough"),
    "storagetags": ("string", "the storage tags a pool must have for the root disk (comma-separated)"),
    "serviceofferingdetails": ("map", "the offering's details (key/value pairs)"),
    "displayoffering": ("boolean", "whether users see the offering"),
    "disksizestrictness": ("boolean", "whether a volume of it keeps its size (no resize)"),
    "diskofferingstrictness": ("boolean", "whether a VM of it must keep its root disk offering"),
    "iscustomizediops": ("boolean", "whether IOPS are given at deploy"),
    "diskBytesReadRate": ("long", "the read rate limit in bytes per second"),
    "diskBytesReadRateMax": ("long", "the burst read rate limit in bytes per second"),
    "diskBytesReadRateMaxLength": ("long", "how long a read burst may last, in seconds"),
    "diskBytesWriteRate": ("long", "the write rate limit in bytes per second"),
    "diskBytesWriteRateMax": ("long", "the burst write rate limit in bytes per second"),
    "diskBytesWriteRateMaxLength": ("long", "how long a write burst may last, in seconds"),
    "diskIopsReadRate": ("long", "the read limit in I/O operations per second"),
    "diskIopsReadRateMax": ("long", "the burst read limit in I/O operations per second"),
    "diskIopsReadRateMaxLength": ("long", "how long a read burst may last, in seconds"),
    "diskIopsWriteRate": ("long", "the write limit in I/O operations per second"),
    "diskIopsWriteRateMax": ("long", "the burst write limit in I/O operations per second"),
    "diskIopsWriteRateMaxLength": ("long", "how long a write burst may last, in seconds"),
    "miniops": ("long", "the minimum IOPS"),
    "maxiops": ("long", "the maximum IOPS"),
    "customizediops": ("boolean", "whether IOPS are given at deploy"),
    # offerings
    "iscustomized": ("boolean", "whether the size is given at deploy (a custom offering)"),
    "offerha": ("boolean", "whether VMs of it are HA-enabled"),
    "isvolatile": ("boolean", "whether the root disk is recreated at each reboot"),
    "limitcpuuse": ("boolean", "whether CPU use is capped"),
    "deploymentplanner": ("string", "the deployment planner"),
    "mincpunumber": ("integer", "the fewest vCPUs a custom offering takes"),
    "maxcpunumber": ("integer", "the most vCPUs a custom offering takes"),
    "minmemory": ("integer", "the least memory (MiB) a custom offering takes"),
    "maxmemory": ("integer", "the most memory (MiB) a custom offering takes"),
    "rootdisksize": ("long", "the root disk's size in GiB"),
    "dynamicscalingenabled": ("boolean", "whether VMs of it may scale while running"),
    # templates
    "format": ("string", "the image format (QCOW2, RAW)"),
    "ostypeid": ("string", "the id of the guest OS type"),
    "ostypename": ("string", "the name of the guest OS type"),
    "isready": ("boolean", "whether it may be deployed"),
    "status": ("string", "the {what}'s status"),
    "templatetype": ("string", "USER, BUILTIN, SYSTEM..."),
    "ispublic": ("boolean", "whether every account may use it"),
    "isfeatured": ("boolean", "whether it is featured"),
    "passwordenabled": ("boolean", "whether the guest takes a password from the cloud"),
    "crossZones": ("boolean", "whether it is in every zone"),
    "url": ("string", "where it was downloaded from"),
    "isdynamicallyscalable": ("boolean", "whether it may scale while running"),
    "sshkeyenabled": ("boolean", "whether the guest takes SSH keys from the cloud"),
    "bits": ("integer", "32 or 64"),
    "checksum": ("string", "the image's checksum"),
    "directdownload": ("boolean", "whether hosts download it directly"),
    "templatetag": ("string", "the template's tag"),
    # VMs
    "instancename": ("string", "the VM's name on its host"),
    "templateid": ("string", "the id of the template"),
    "templatename": ("string", "the name of the template"),
    "templatedisplaytext": ("string", "the description of the template"),
    "serviceofferingid": ("string", "the id of the service offering"),
    "serviceofferingname": ("string", "the name of the service offering"),
    "haenable": ("boolean", "whether HA restarts the VM"),
    "rootdeviceid": ("long", "the root disk's device id"),
    "rootdevicetype": ("string", "the root disk's type"),
    "nic": ("list", "the VM's NICs"),
    "securitygroup": ("list", "the VM's security groups"),
    "affinitygroup": ("list", "the VM's affinity groups"),
    "keypairs": ("string", "the names of the VM's SSH key pairs"),
    "group": ("string", "the VM's group"),
    "displayvm": ("boolean", "whether users see the VM"),
    "displayvolume": ("boolean", "whether users see the volume"),
    "password": ("string", "the guest's password (shown once, by the deploy)"),
    "groupid": ("string", "the id of the VM's group"),
    "guestosid": ("string", "the id of the guest OS type"),
    "userdataid": ("string", "the id of the registered user data"),
    "userdataname": ("string", "the name of the registered user data"),
    "userdata": ("string", "the user data (Base64)"),
    "macaddress": ("string", "the MAC address"),
    "networkkbsread": ("long", "network bytes received, in KiB"),
    "networkkbswrite": ("long", "network bytes sent, in KiB"),
    "diskkbsread": ("long", "disk bytes read, in KiB"),
    "diskkbswrite": ("long", "disk bytes written, in KiB"),
    "diskioread": ("long", "disk read operations"),
    "diskiowrite": ("long", "disk write operations"),
    "memorykbs": ("long", "the guest's memory, in KiB"),
    "memoryintfreekbs": ("long", "the memory free inside the guest, in KiB"),
    "memorytargetkbs": ("long", "the memory the balloon targets, in KiB"),
    # users and keys
    "firstname": ("string", "the user's first name"),
    "lastname": ("string", "the user's last name"),
    "email": ("string", "the user's e-mail address"),
    "apikey": ("string", "the user's API key"),
    "secretkey": ("string", "the user's secret key"),
    "fingerprint": ("string", "the public key's fingerprint"),
    "privatekey": ("string", "the private key (only when the cloud made the pair)"),
    "params": ("string", "the names of the user data's parameters"),
    "haschild": ("boolean", "whether the domain has subdomains"),
    "level": ("integer", "the domain's depth (ROOT is 0)"),
    # jobs, events, alerts, settings
    "jobid": ("string", "the id of the async job"),
    "jobstatus": ("integer", "0 pending, 1 succeeded, 2 failed"),
    "jobprocstatus": ("integer", "the job's progress"),
    "jobresultcode": ("integer", "the job's result code"),
    "jobresulttype": ("string", "object or text"),
    "jobresult": ("map", "the job's result"),
    "jobinstancetype": ("string", "the type of what the job works on"),
    "jobinstanceid": ("string", "the id of what the job works on"),
    "cmd": ("string", "the command the job runs"),
    "completed": ("date", "when the job ended"),
    "resourcetype": ("string", "the type of the resource"),
    "resourceid": ("string", "the id of the resource"),
    "value": ("string", "the setting's value"),
    "defaultvalue": ("string", "the setting's default value"),
    "category": ("string", "the setting's category"),
    "isdynamic": ("boolean", "whether a change applies without a restart"),
    "sent": ("date", "when the alert was raised"),
    # limits
    "resourcetypename": ("string", "the name of the resource type"),
    "max": ("long", "the limit (-1: none)"),
    "resourcecount": ("long", "the resources in use"),
    # security and affinity groups
    "ingressrule": ("list", "the group's inbound rules"),
    "egressrule": ("list", "the group's outbound rules"),
    "virtualmachinecount": ("integer", "the number of VMs in the group"),
    "virtualmachineids": ("list", "the ids of the VMs in the group"),
    "virtualmachineIds": ("list", "the ids of the VMs in the group"),
    "ruleid": ("string", "the rule's id"),
    "protocol": ("string", "the rule's protocol"),
    "startport": ("integer", "the first port of the rule"),
    "endport": ("integer", "the last port of the rule"),
    "icmptype": ("integer", "the ICMP type of the rule"),
    "icmpcode": ("integer", "the ICMP code of the rule"),
    "securitygroupname": ("string", "the group the rule lets traffic from"),
    # management servers, roles, capabilities
    "serviceip": ("string", "the address other servers reach it on"),
    "lastserverstart": ("date", "when it last started"),
    "certificate": ("string", "the CA certificates (PEM)"),
    "oscategoryid": ("string", "the id of the OS category"),
    "isuserdefined": ("boolean", "whether an admin added it"),
    "cloudstackversion": ("string", "the CloudStack version the API follows"),
    "apilimitmax": ("integer", "requests allowed per interval (0: no limit)"),
    "apilimitinterval": ("integer", "the API limit's interval in seconds"),
    "allowusercreateprojects": ("boolean", "whether users may create projects"),
    "userpublictemplateenabled": ("boolean", "whether users may make templates public"),
    "kvmsnapshotenabled": ("boolean", "whether KVM VM snapshots are on"),
    "supportELB": ("string", "whether elastic load balancing is supported"),
    "projectinviterequired": ("boolean", "whether project membership needs an invitation"),
    "customdiskofferingmaxsize": ("long", "the largest custom disk in GiB"),
    "customdiskofferingminsize": ("long", "the smallest custom disk in GiB"),
    "dynamicrolesenabled": ("boolean", "whether roles may be edited"),
    "success": ("boolean", "whether it succeeded"),
    "sessionkey": ("string", "the session key to send with later calls"),
    "timeout": ("integer", "the session's idle timeout in seconds"),
    "registered": ("boolean", "whether the user is registered"),
    "token": ("string", "the registration token"),
    "expires": ("date", "when it expires"),
    "isasync": ("boolean", "whether the command runs as an async job"),
    "since": ("string", "the version the command appeared in"),
    "related": ("string", "related commands"),
    "response": ("list", "the fields of what the command answers"),
}

OVERRIDES: dict[str, tuple[str, str]] = {
    "capacity.type": ("short", "the capacity type: 0 memory, 1 CPU, 2 storage, 3 allocated storage..."),
    "event.level": ("string", "INFO, WARN or ERROR"),
    "event.type": ("string", "the event type (VM.CREATE...)"),
    "alert.type": ("short", "the alert type"),
    "host.type": ("string", "Routing for hypervisor hosts"),
    "volume.type": ("string", "ROOT or DATADISK"),
    "volume.size": ("long", "the volume's size in bytes"),
    "template.size": ("long", "the image's virtual size in bytes"),
    "host.cpuused": ("string", "the share of the host's CPU in use, as a percentage"),
    "api.params": ("list", "the command's parameters"),
    "api.name": ("string", "the command's name"),
    "managementserver.version": ("string", "the server's Cumulo version"),
}


# item key -> (the object's noun, its fields in the order the views write them)
OBJECTS: dict[str, tuple[str, str]] = {
    "account": ("account", "id name accounttype roletype domainid domain domainpath state isdefault created "
                "user"),
    "affinitygroup": ("affinity group", "id name type description account domainid domain "
                      "virtualmachineIds"),
    "affinityGroupType": ("affinity group type", "type"),
    "agentregistrationtoken": ("registration token", "token zoneid expires"),
    "alert": ("alert", "id type name description sent"),
    "api": ("API command", "name description isasync since related params response"),
    "asyncjobs": ("job", "jobid accountid userid cmd created jobstatus jobprocstatus jobresultcode "
                  "jobinstancetype jobinstanceid jobresulttype jobresult completed"),
    "cacertificates": ("CA certificate", "certificate"),
    "capability": ("capability", "cloudstackversion securitygroupsenabled apilimitmax apilimitinterval "
                   "allowusercreateprojects userpublictemplateenabled kvmsnapshotenabled supportELB "
                   "projectinviterequired customdiskofferingmaxsize customdiskofferingminsize "
                   "dynamicrolesenabled"),
    "capacity": ("capacity", "type zoneid zonename podid podname clusterid clustername capacityused "
                 "capacitytotal percentused"),
    "cluster": ("cluster", "id name zoneid zonename podid podname hypervisortype clustertype "
                "allocationstate managedstate cpuovercommitratio memoryovercommitratio capacity"),
    "configuration": ("setting", "name value defaultvalue category description scope isdynamic group "
                      "subgroup parent displaytext type component id"),
    "diskoffering": ("disk offering", "id name displaytext disksize tags iscustomized storagetype "
                     "displayoffering disksizestrictness details domainid zoneid provisioningtype cacheMode "
                     "diskBytesReadRate diskBytesReadRateMax "
                     "diskBytesReadRateMaxLength diskBytesWriteRate diskBytesWriteRateMax "
                     "diskBytesWriteRateMaxLength diskIopsReadRate diskIopsReadRateMax "
                     "diskIopsReadRateMaxLength diskIopsWriteRate diskIopsWriteRateMax "
                     "diskIopsWriteRateMaxLength iscustomizediops created"),
    "domain": ("domain", "id name path level haschild state created"),
    "event": ("event", "id type state level description username account domainid domain resourcetype "
              "resourceid created"),
    "host": ("host", "id name state type resourcestate zoneid zonename podid podname clusterid clustername "
             "clustertype hypervisor hypervisorversion version ipaddress hosttags cpunumber cpuspeed "
             "cpuallocated cpuallocatedvalue memorytotal memoryallocated memoryused islocalstorageactive "
             "created lastpinged disconnected managementserverid events annotation"),
    "ipforwardingrule": ("IP forwarding rule", "id"),
    "keypair": ("SSH key pair", "id name fingerprint privatekey account domainid domain hasannotations"),
    "login": ("login session", "username userid domainid timeout sessionkey account firstname lastname "
              "type registered"),
    "logout": ("logout", "description"),
    "managementserver": ("management server", "id name state version serviceip lastserverstart"),
    "network": ("network", "id name displaytext zoneid zonename type traffictype state cidr gateway "
                "netmask dns1 dns2 vlan broadcasturi broadcastdomaintype acltype canusefordeploy isdefault "
                "ispersistent issystem specifyipranges networkofferingid networkofferingname startip endip "
                "service tags account domainid domain created externalid"),
    "networkoffering": ("network offering", "id name displaytext guestiptype traffictype state isdefault "
                        "ispersistent specifyvlan specifyipranges conservemode forvpc egressdefaultpolicy "
                        "supportspublicaccess networkrate service tags created"),
    "ostype": ("OS type", "id description oscategoryid isuserdefined"),
    "pod": ("pod", "id name zoneid zonename gateway netmask startip endip allocationstate capacity"),
    "portforwardingrule": ("port forwarding rule", "id"),
    "publicipaddress": ("public IP address", "id"),
    "resourcecount": ("resource count", "resourcetype resourcetypename resourcecount domainid domain "
                      "domainpath account"),
    "resourcelimit": ("resource limit", "resourcetype resourcetypename max domainid domain domainpath "
                      "account"),
    "role": ("role", "id name type description isdefault state ispublic"),
    "securitygroup": ("security group", "id name description account domainid domain ingressrule "
                      "egressrule tags virtualmachinecount virtualmachineids"),
    "serviceoffering": ("service offering", "id name displaytext cpunumber cpuspeed memory hosttags "
                        "storagetags offerha storagetype deploymentplanner iscustomized issystem isvolatile "
                        "limitcpuuse rootdisksize networkrate dynamicscalingenabled iscustomizediops "
                        "serviceofferingdetails domainid zoneid provisioningtype cacheMode diskBytesReadRate "
                        "diskBytesReadRateMax diskBytesReadRateMaxLength diskBytesWriteRate "
                        "diskBytesWriteRateMax diskBytesWriteRateMaxLength diskIopsReadRate "
                        "diskIopsReadRateMax diskIopsReadRateMaxLength diskIopsWriteRate "
                        "diskIopsWriteRateMax diskIopsWriteRateMaxLength created"),
    "sshkeypair": ("SSH key pair", "id name fingerprint account domainid domain hasannotations"),
    "storagepool": ("storage pool", "id name zoneid zonename podid podname clusterid clustername scope type "
                    "path tags state ipaddress hypervisor disksizetotal disksizeallocated disksizeused "
                    "overprovisionfactor created"),
    "success": ("result", "success displaytext"),
    "template": ("template", "id name displaytext hypervisor format ostypename ostypeid isready status "
                 "templatetype zoneid zonename size ispublic isfeatured isextractable passwordenabled "
                 "sshkeyenabled isdynamicallyscalable bits checksum directdownload templatetag crossZones "
                 "account domainid domain url details created tags"),
    "tag": ("tag", "key value resourcetype resourceid account domainid domain customer"),
    "user": ("user", "id username firstname lastname email account accountid accounttype roletype domainid "
             "domain state apikey created isdefault"),
    "userdata": ("user data", "id name userdata params accountid account domainid domain hasannotations"),
    "userkeys": ("key pair of a user", "apikey secretkey"),
    "virtualmachine": ("VM", "id name displayname state group groupid displayvm zoneid zonename "
                       "templateid templatename templatedisplaytext guestosid serviceofferingid "
                       "serviceofferingname diskofferingid diskofferingname cpunumber cpuspeed memory "
                       "created "
                       "lastupdated hypervisor account userid username domainid domain projectid project "
                       "haenable "
                       "passwordenabled "
                       "isdynamicallyscalable rootdeviceid rootdevicetype nic securitygroup affinitygroup "
                       "keypairs userdataid userdataname tags details hostid hostname instancename cpuused "
                       "networkkbsread networkkbswrite diskkbsread diskkbswrite diskioread diskiowrite "
                       "memorykbs memoryintfreekbs memorytargetkbs userdata"),
    "virtualmachineconsolelog": ("console log", "id consolelog"),
    "virtualmachineuserdata": ("VM user data", "virtualmachineid userdata"),
    "volume": ("volume", "id name type size state zoneid zonename virtualmachineid vmname vmdisplayname "
               "vmstate deviceid storageid storage storagetype provisioningtype diskBytesReadRate "
               "diskBytesWriteRate diskIopsReadRate diskIopsWriteRate displayvolume diskofferingid "
               "diskofferingname diskofferingdisplaytext miniops maxiops account domainid domain created "
               "attached destroyed isextractable tags path"),
    "zone": ("zone", "id name networktype allocationstate dns1 dns2 internaldns1 internaldns2 "
             "guestcidraddress securitygroupsenabled localstorageenabled tags capacity resourcedetails"),
}
GLOSSARY["internaldns1"] = ("string", "the first DNS server of the zone's hosts")
GLOSSARY["internaldns2"] = ("string", "the second DNS server of the zone's hosts")
GLOSSARY["annotation"] = ("string", "an admin's note on the {what}")
GLOSSARY["capacity"] = ("list", "the {what}'s capacity by type (with showcapacities=true)")
_METRICS = {
    "cputotal": ("string", "the CPU the {what} has (GHz)"),
    "cpuused": ("string", "the CPU the {what} uses"),
    "cpuallocated": ("string", "the CPU the {what} gives out"),
    "memorytotal": ("string", "the memory the {what} has"),
    "memoryused": ("string", "the memory the {what} uses"),
    "memoryallocated": ("string", "the memory the {what} gives out"),
    "networkread": ("string", "network bytes received (MB)"),
    "networkwrite": ("string", "network bytes sent (MB)"),
    "diskread": ("string", "disk bytes read (MB)"),
    "diskwrite": ("string", "disk bytes written (MB)"),
    "diskiopstotal": ("long", "disk read and write operations"),
    "powerstate": ("string", "On while the host is Up, else Unknown"),
    "instances": ("string", "VMs running / placed on the host"),
    "systeminstances": ("string", "system VMs running / placed (none here)"),
    "cputotalghz": ("string", "the host's CPU (GHz)"),
    "cpuusedghz": ("string", "the CPU its VMs use (GHz)"),
    "cpuallocatedghz": ("string", "the CPU its VMs hold (GHz)"),
    "memorytotalgb": ("string", "the host's memory (GB)"),
    "memoryusedgb": ("string", "the memory its VMs use (GB)"),
    "memoryallocatedgb": ("string", "the memory its VMs hold (GB)"),
    "hosts": ("string", "hosts Up / all"),
    "clusters": ("string", "the zone's hosts"),
    "sizegb": ("string", "the volume's size (GB)"),
    "disksizetotalgb": ("string", "the pool's size (GB)"),
    "disksizeusedgb": ("string", "the space used (GB)"),
    "disksizeallocatedgb": ("string", "the space given out (GB)"),
    "disksizeunallocatedgb": ("string", "the space left to give out, with overprovisioning (GB)"),
    "storageusagethreshold": ("boolean", "whether use is past the notification threshold"),
    "storageusagedisablethreshold": ("boolean", "whether use is past the disable threshold"),
    "storageallocatedthreshold": ("boolean", "whether allocation is past the notification threshold"),
    "storageallocateddisablethreshold": ("boolean", "whether allocation is past the disable threshold"),
    "agentcount": ("integer", "the agents connected to this server"),
    "availableprocessors": ("integer", "the machine's processors"),
    "systemloadaverage": ("double", "the machine's load average (1 minute)"),
    "systemmemorytotal": ("long", "the machine's memory (bytes)"),
    "systemmemoryfree": ("long", "the machine's memory available (bytes)"),
    "systemmemoryused": ("long", "the machine's memory in use (bytes)"),
    "heapmemoryused": ("long", "the server process's resident memory (bytes)"),
    "osdistribution": ("string", "the machine's operating system"),
    "kernelversion": ("string", "the machine's kernel"),
    "pythonversion": ("string", "the Python the server runs on"),
    "lastboottime": ("date", "when the machine booted"),
    "lastserverstop": ("date", "when it last stopped"),
    "collectiontime": ("date", "when the figures were taken"),
    "dbislocal": ("boolean", "whether the database runs on this machine"),
    "hostname": ("string", "the database server's address"),
    "connections": ("integer", "the database's open connections"),
    "queries": ("long", "the database's transactions so far"),
    "uptime": ("long", "the database's uptime (seconds)"),
    "zones": ("integer", "zones"), "pods": ("integer", "pods"), "storagepools": ("integer", "storage pools"),
    "imagestores": ("integer", "image stores (none here)"),
    "objectstores": ("integer", "object stores (none here)"),
    "systemvms": ("integer", "system VMs (none here)"), "routers": ("integer", "virtual routers (none here)"),
    "ilbvms": ("integer", "internal load balancer VMs (none here)"),
    "managementservers": ("integer", "management servers Up"), "alerts": ("integer", "alerts not archived"),
}
for _name, _spec in _METRICS.items():
    GLOSSARY.setdefault(_name, _spec)
for _level in ("cpu", "memory"):
    for _what, _text in (("threshold", "use past the notification threshold"),
                         ("disablethreshold", "use past the disable threshold"),
                         ("allocatedthreshold", "allocation past the notification threshold"),
                         ("allocateddisablethreshold", "allocation past the disable threshold")):
        GLOSSARY[f"{_level}{_what}"] = ("boolean", f"whether {_level} {_text}")
_THRESHOLDS = " ".join(f"{lv}{w}" for lv in ("cpu", "memory") for w in (
    "threshold", "disablethreshold", "allocatedthreshold", "allocateddisablethreshold"))
OBJECTS.update({
    "virtualmachinemetrics": ("VM", OBJECTS["virtualmachine"][1] + " ipaddress cputotal memorytotal "
                              "networkread networkwrite diskread diskwrite diskiopstotal"),
    "hostmetrics": ("host", OBJECTS["host"][1] + " powerstate instances systeminstances cputotalghz "
                    "cpuusedghz cpuallocatedghz cpuused memorytotalgb memoryusedgb memoryallocatedgb "
                    "networkread networkwrite networkkbsread networkkbswrite " + _THRESHOLDS),
    "clustermetrics": ("cluster", OBJECTS["cluster"][1] + " state hosts cputotal cpuused cpuallocated "
                       "memorytotal memoryused memoryallocated " + _THRESHOLDS),
    "zonemetrics": ("zone", OBJECTS["zone"][1] + " state clusters cputotal cpuused cpuallocated memorytotal "
                    "memoryused memoryallocated " + _THRESHOLDS),
    "storagepoolmetrics": ("storage pool", OBJECTS["storagepool"][1] + " disksizetotalgb disksizeusedgb "
                           "disksizeallocatedgb disksizeunallocatedgb storageusagethreshold "
                           "storageusagedisablethreshold storageallocatedthreshold "
                           "storageallocateddisablethreshold"),
    "volumemetrics": ("volume", OBJECTS["volume"][1] + " sizegb"),
    "managementservermetrics": ("management server", OBJECTS["managementserver"][1] + " lastserverstop "
                                "agentcount availableprocessors systemloadaverage systemmemorytotal "
                                "systemmemoryfree systemmemoryused heapmemoryused osdistribution "
                                "kernelversion pythonversion lastboottime collectiontime dbislocal"),
    "infrastructure": ("infrastructure", "zones pods clusters hosts storagepools imagestores objectstores "
                       "systemvms routers ilbvms managementservers alerts"),
    "dbMetrics": ("database", "hostname version connections queries uptime dbislocal collectiontime"),
})
for _kind in ("serviceoffering", "diskoffering"):
    OVERRIDES[f"{_kind}.domainid"] = ("string", "the domains it is for (comma-separated; none: public)")
    OVERRIDES[f"{_kind}.zoneid"] = ("string", "the zones it is offered in (none: every zone)")
OVERRIDES.update({"virtualmachinemetrics.cpuused": ("string", "the share of its vCPUs in use (percent)"),
                  "hostmetrics.cpuused": ("string", "the share of the host's CPU in use, as a percentage"),
                  "clustermetrics.cpuused": ("string", "the CPU its VMs use (GHz)"),
                  "zonemetrics.cpuused": ("string", "the CPU its VMs use (GHz)"),
                  "clustermetrics.memorytotal": ("string", "the cluster's memory (GB)"),
                  "zonemetrics.memorytotal": ("string", "the zone's memory (GB)"),
                  "clustermetrics.cpuallocated": ("string", "the CPU its VMs hold (GHz)"),
                  "zonemetrics.cpuallocated": ("string", "the CPU its VMs hold (GHz)"),
                  "clustermetrics.memoryused": ("string", "the memory its VMs use (GB)"),
                  "zonemetrics.memoryused": ("string", "the memory its VMs use (GB)"),
                  "clustermetrics.memoryallocated": ("string", "the memory its VMs hold (GB)"),
                  "zonemetrics.memoryallocated": ("string", "the memory its VMs hold (GB)"),
                  "virtualmachinemetrics.memorytotal": ("string", "the VM's memory (GB)"),
                  "zonemetrics.state": ("string", "Enabled or Disabled"),
                  "clustermetrics.state": ("string", "Enabled or Disabled"),
                  "dbMetrics.version": ("string", "the database's software and version"),
                  "virtualmachinemetrics.ipaddress": ("string", "the default NIC's address")})
GLOSSARY["key"] = ("string", "the tag's key")
GLOSSARY["customer"] = ("string", "the customer the tag is for")
OVERRIDES["tag.value"] = ("string", "the tag's value")
OVERRIDES["tag.resourcetype"] = ("string", "the type of the tagged resource (UserVm, Volume...)")
OVERRIDES["tag.resourceid"] = ("string", "the id of the tagged resource")
GLOSSARY["consolelog"] = ("string", "the console output (Base64)")
GLOSSARY["guestcidraddress"] = ("string", "the guest CIDR of the zone's isolated networks")


def field(obj: str, name: str) -> dict[str, Any]:
    """One field of a response object as listApis shows it."""
    noun = OBJECTS[obj][0] if obj in OBJECTS else obj
    kind, text = OVERRIDES.get(f"{obj}.{name}") or GLOSSARY[name]
    return {"name": name, "type": kind, "description": text.format(what=noun)}


def fields_of(obj: str) -> list[dict[str, Any]]:
    """The fields of the response object ``obj`` (an item key), as listApis shows them."""
    return [field(obj, n) for n in OBJECTS[obj][1].split()]


def declared(obj: str) -> set[str]:
    return set(OBJECTS[obj][1].split())


for _obj, (_noun, _names) in OBJECTS.items():  # (a field named twice would be listed twice)
    assert len(_names.split()) == len(set(_names.split())), f"{_obj}: a field is named twice"

# Projects (listProjects, listProjectAccounts).
_PROJECT_LIMITS = {"vm": "VMs", "ip": "public IPs", "volume": "volumes", "snapshot": "snapshots",
                   "template": "templates", "network": "networks", "vpc": "VPCs", "cpu": "vCPUs",
                   "memory": "memory (MiB)", "primarystorage": "primary storage (GiB)",
                   "secondarystorage": "secondary storage (GiB)"}
for _prefix, _what in _PROJECT_LIMITS.items():
    GLOSSARY.setdefault(f"{_prefix}limit", ("string", f"the {{what}}'s limit of {_what} (Unlimited: none)"))
    GLOSSARY.setdefault(f"{_prefix}total", ("long", f"the {{what}}'s {_what} now"))
    GLOSSARY.setdefault(f"{_prefix}available", ("string", f"the {_what} the {{what}} may still have"))
GLOSSARY.setdefault("owner", ("list", "the {what}'s Admin members (account, and user for a single user)"))
GLOSSARY.setdefault("projectaccountname", ("string", "the name of the project's own account (owner of its "
                                                     "resources)"))
GLOSSARY.setdefault("vmrunning", ("integer", "the {what}'s running VMs"))
GLOSSARY.setdefault("vmstopped", ("integer", "the {what}'s stopped VMs"))
GLOSSARY.setdefault("projectid", ("string", "the id of the {what}'s project"))
GLOSSARY.setdefault("project", ("string", "the name of the {what}'s project"))
GLOSSARY.setdefault("role", ("string", "the member's role: Admin or Regular"))
OBJECTS["project"] = ("project", "id name displaytext domainid domain domainpath state created "
                      "projectaccountname owner account tags vmrunning vmstopped "
                      + " ".join(f"{p}limit {p}total {p}available" for p in _PROJECT_LIMITS))
OBJECTS["projectaccount"] = ("project member", "projectid project account accountid role userid username "
                             "domainid domain")

# Settings and their groups (listConfigurations, listConfigurationGroups).
OVERRIDES.update({
    "configuration.group": ("string", "the group the setting is in (listConfigurationGroups)"),
    "configuration.subgroup": ("string", "the subgroup of its group"),
    "configuration.parent": ("string", "the setting that turns this one's feature on"),
    "configuration.displaytext": ("string", "the setting's name, for display"),
    "configuration.type": ("string", "the kind of value: Boolean, Number, Decimal or String"),
    "configuration.component": ("string", "what reads the setting"),
    "configuration.id": ("string", "with a scope: the id of the zone, cluster, pool, domain or account"),
    "configuration.scope": ("string", "global, or the one kind of place it may also be set for (zone, "
                                      "cluster, storagepool, domain, account)"),
    "configuration.isdynamic": ("boolean", "whether a change applies at once (else at restart)"),
    "configurationgroup.subgroup": ("list", "its subgroups (name, precedence)"),
})
GLOSSARY.setdefault("precedence", ("long", "the {what}'s place in the order groups are shown"))
OBJECTS["configurationgroup"] = ("setting group", "name description precedence subgroup")
GLOSSARY.setdefault("externalid", ("string", "the {what}'s id in another system, as its creator gave it"))
GLOSSARY.setdefault("resourcedetails", ("map", "the {what}'s details (key/value pairs)"))
