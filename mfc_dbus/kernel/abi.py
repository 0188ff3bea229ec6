"""cffi ABI-mode declarations of <linux/mroute.h> and <linux/mroute6.h>.

Plain declarations only: cffi lays the structs out as the C compiler does, so there
are no hand-written padding fields. tests/kernel/test_abi.py compiles a C program
against the real headers and checks every sizeof and offsetof.
"""

import cffi

ffi = cffi.FFI()
ffi.cdef("""
    typedef unsigned short vifi_t;
    typedef unsigned short mifi_t;
    typedef uint32_t if_mask;
    typedef unsigned short sa_family_t;

    struct in_addr { uint32_t s_addr; };
    struct in6_addr { uint8_t s6_addr[16]; };
    struct sockaddr_in6 {
        sa_family_t sin6_family;
        uint16_t sin6_port;
        uint32_t sin6_flowinfo;
        struct in6_addr sin6_addr;
        uint32_t sin6_scope_id;
    };

    struct vifctl {
        vifi_t vifc_vifi;
        unsigned char vifc_flags;
        unsigned char vifc_threshold;
        unsigned int vifc_rate_limit;
        union {
            struct in_addr vifc_lcl_addr;
            int vifc_lcl_ifindex;
        };
        struct in_addr vifc_rmt_addr;
    };

    struct mfcctl {
        struct in_addr mfcc_origin;
        struct in_addr mfcc_mcastgrp;
        vifi_t mfcc_parent;
        unsigned char mfcc_ttls[32];
        unsigned int mfcc_pkt_cnt;
        unsigned int mfcc_byte_cnt;
        unsigned int mfcc_wrong_if;
        int mfcc_expire;
    };

    struct sioc_sg_req {
        struct in_addr src;
        struct in_addr grp;
        unsigned long pktcnt;
        unsigned long bytecnt;
        unsigned long wrong_if;
    };

    struct sioc_vif_req {
        vifi_t vifi;
        unsigned long icount;
        unsigned long ocount;
        unsigned long ibytes;
        unsigned long obytes;
    };

    struct igmpmsg {
        uint32_t unused1, unused2;
        unsigned char im_msgtype;
        unsigned char im_mbz;
        unsigned char im_vif;
        unsigned char im_vif_hi;
        struct in_addr im_src, im_dst;
    };

    struct if_set { if_mask ifs_bits[8]; };

    struct mif6ctl {
        mifi_t mif6c_mifi;
        unsigned char mif6c_flags;
        unsigned char vifc_threshold;
        uint16_t mif6c_pifi;
        unsigned int vifc_rate_limit;
    };

    struct mf6cctl {
        struct sockaddr_in6 mf6cc_origin;
        struct sockaddr_in6 mf6cc_mcastgrp;
        mifi_t mf6cc_parent;
        struct if_set mf6cc_ifset;
    };

    struct sioc_sg_req6 {
        struct sockaddr_in6 src;
        struct sockaddr_in6 grp;
        unsigned long pktcnt;
        unsigned long bytecnt;
        unsigned long wrong_if;
    };

    struct sioc_mif_req6 {
        mifi_t mifi;
        unsigned long icount;
        unsigned long ocount;
        unsigned long ibytes;
        unsigned long obytes;
    };

    struct mrt6msg {
        uint8_t im6_mbz;
        uint8_t im6_msgtype;
        uint16_t im6_mif;
        uint32_t im6_pad;
        struct in6_addr im6_src, im6_dst;
    };

    struct icmp6_filter { uint32_t icmp6_filt[8]; };
    """)

# <linux/mroute.h>, <linux/mroute6.h>: identical numbering for both families.
MRT_INIT = 200
MRT_DONE = 201
MRT_ADD_VIF = 202
MRT_DEL_VIF = 203
MRT_ADD_MFC = 204
MRT_DEL_MFC = 205
MRT_VERSION = 206
MRT_ASSERT = 207
MRT_PIM = 208
MRT_TABLE = 209
MRT_FLUSH = 212
MRT_FLUSH_MFC = 1
MRT_FLUSH_MFC_STATIC = 2
MRT_FLUSH_VIFS = 4
MRT_FLUSH_VIFS_STATIC = 8

VIFF_USE_IFINDEX = 0x8
MAXVIFS = 32

SIOCPROTOPRIVATE = 0x89E0
SIOCGETVIFCNT = SIOCPROTOPRIVATE
SIOCGETSGCNT = SIOCPROTOPRIVATE + 1

# Upcall message types: IGMPMSG_* and MRT6MSG_* share their values.
MSG_NOCACHE = 1
MSG_WRONGVIF = 2
MSG_WHOLEPKT = 3
MSG_WRVIFWHOLE = 4

ICMP6_FILTER = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6

# Group joins (RFC 3678 protocol-independent API, <linux/in.h>) and the socket filter
# that keeps join sockets from receiving data (<linux/filter.h>).
ffi.cdef("""
    struct sockaddr_in {
        sa_family_t sin_family;
        uint16_t sin_port;
        struct in_addr sin_addr;
        unsigned char __pad[8];
    };

    struct __kernel_sockaddr_storage {
        union {
            struct {
                sa_family_t ss_family;
                char __data[126];
            };
            void *__align;
        };
    };

    struct group_req {
        uint32_t gr_interface;
        struct __kernel_sockaddr_storage gr_group;
    };

    struct group_source_req {
        uint32_t gsr_interface;
        struct __kernel_sockaddr_storage gsr_group;
        struct __kernel_sockaddr_storage gsr_source;
    };

    struct group_filter {
        uint32_t gf_interface;
        struct __kernel_sockaddr_storage gf_group;
        uint32_t gf_fmode;
        uint32_t gf_numsrc;
        struct __kernel_sockaddr_storage gf_slist[1];
    };

    struct sock_filter {
        uint16_t code;
        uint8_t jt;
        uint8_t jf;
        uint32_t k;
    };

    struct sock_fprog {
        unsigned short len;
        struct sock_filter *filter;
    };
    """)

# Same values at level IPPROTO_IP and IPPROTO_IPV6.
MCAST_JOIN_GROUP = 42
MCAST_LEAVE_GROUP = 45
MCAST_JOIN_SOURCE_GROUP = 46
MCAST_LEAVE_SOURCE_GROUP = 47

MCAST_MSFILTER = 48  # getsockopt: the filter (mode, sources) a socket holds for a group
MCAST_EXCLUDE = 0  # any source but those listed (an any-source join lists none)
MCAST_INCLUDE = 1  # only the sources listed (source-specific joins)

# getsockopt(2) itself: MCAST_MSFILTER reads its question from the buffer it answers in,
# which Python's socket.getsockopt cannot pass.
ffi.cdef("int getsockopt(int fd, int level, int name, void *value, uint32_t *length);")
libc = ffi.dlopen(None)

SO_ATTACH_FILTER = 26  # level SOL_SOCKET; SO_GET_FILTER has the same value
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant k (0: drop the packet)
