/*
 * A NATS client in C on the official client library (nats.c, Debian's libnats-dev), driven by
 * test/e2e/nats-c-client.test.ts against the gateway's NATS endpoint. Built by the test:
 *
 *   cc -o nats-c-client nats-c-client.c -lnats
 *
 * Usage: nats-c-client [-u user -p password] <url> <scenario> [args...]
 *
 * One scenario per run; results on stdout, one line each, for the test to compare exactly.
 * `ready` means the subscriptions are registered with the server (flushed). Any failure
 * prints `error <STATUS> <text>` and exits 1.
 *
 *   connect                        connected | error NATS_CONNECTION_AUTH_FAILED ...
 *   pub <subject> <data>...        publishes each <data>, flushes; `published <n>`
 *   sub <subject> <count>          `ready`, then `msg <subject> <data>` for <count> messages
 *   queue <subject> <group> <n>    as sub, in queue group <group>
 *   request <subject> <data>...    one request per <data>; `reply <data>` for each answer
 *   respond <subject> <count>      `ready`; answers <count> requests with `echo <data>`,
 *                                  copying the request's `Trace` header, if any
 *   hpub <subject>                 one message with headers Site: north, Unit: C, Unit: K
 *   hsub <subject>                 `ready`; prints every header value of one message
 *   autounsub <subject> <max>      `ready`; the messages it gets, then the status that ends it;
 *                                  stays connected until its stdin ends
 *   maxpayload <subject>           `max_payload <n>`, then publishes n+1 and n bytes
 */
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Generous for a loaded machine: a wait this long means something is wrong, not slow. */
#define WAIT_MS 10000

static const char *
statusName(natsStatus s)
{
    switch (s)
    {
    case NATS_OK: return "NATS_OK";
    case NATS_NO_RESPONDERS: return "NATS_NO_RESPONDERS";
    case NATS_MAX_PAYLOAD: return "NATS_MAX_PAYLOAD";
    case NATS_CONNECTION_AUTH_FAILED: return "NATS_CONNECTION_AUTH_FAILED";
    case NATS_NOT_PERMITTED: return "NATS_NOT_PERMITTED";
    case NATS_TIMEOUT: return "NATS_TIMEOUT";
    case NATS_MAX_DELIVERED_MSGS: return "NATS_MAX_DELIVERED_MSGS";
    case NATS_INVALID_SUBSCRIPTION: return "NATS_INVALID_SUBSCRIPTION";
    case NATS_CONNECTION_CLOSED: return "NATS_CONNECTION_CLOSED";
    case NATS_NO_SERVER: return "NATS_NO_SERVER";
    default: return "NATS_OTHER";
    }
}

static int
fail(natsStatus s)
{
    const char *last = nats_GetLastError(NULL);
    printf("error %s %s\n", statusName(s), last != NULL ? last : natsStatus_GetText(s));
    return 1;
}

#define CHECK(call)                  \
    do                               \
    {                                \
        natsStatus s_ = (call);      \
        if (s_ != NATS_OK)           \
            return fail(s_);         \
    } while (0)

static void
printMsg(natsMsg *m)
{
    printf("msg %s %.*s\n", natsMsg_GetSubject(m), natsMsg_GetDataLength(m), natsMsg_GetData(m));
}

/* Receives `count` messages on a flushed subscription, printing each. */
static int
receive(natsConnection *nc, natsSubscription *sub, int count)
{
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("ready\n");
    for (int i = 0; i < count; i++)
    {
        natsMsg *m = NULL;
        CHECK(natsSubscription_NextMsg(&m, sub, WAIT_MS));
        printMsg(m);
        natsMsg_Destroy(m);
    }
    return 0;
}

static int
pub(natsConnection *nc, const char *subject, int n, char **data)
{
    for (int i = 0; i < n; i++)
        CHECK(natsConnection_PublishString(nc, subject, data[i]));
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("published %d\n", n);
    return 0;
}

static int
sub(natsConnection *nc, const char *subject, const char *group, int count)
{
    natsSubscription *s = NULL;
    if (group != NULL)
        CHECK(natsConnection_QueueSubscribeSync(&s, nc, subject, group));
    else
        CHECK(natsConnection_SubscribeSync(&s, nc, subject));
    int rc = receive(nc, s, count);
    natsSubscription_Destroy(s);
    return rc;
}

static int
request(natsConnection *nc, const char *subject, int n, char **data)
{
    for (int i = 0; i < n; i++)
    {
        natsMsg *req = NULL;
        natsMsg *reply = NULL;
        CHECK(natsMsg_Create(&req, subject, NULL, data[i], (int) strlen(data[i])));
        CHECK(natsMsgHeader_Set(req, "Trace", data[i]));
        natsStatus s = natsConnection_RequestMsg(&reply, nc, req, WAIT_MS);
        natsMsg_Destroy(req);
        if (s != NATS_OK)
        {
            /* No responders is a result here, not a failure of this program. */
            printf("status %s\n", statusName(s));
            continue;
        }
        const char *trace = NULL;
        if (natsMsgHeader_Get(reply, "Trace", &trace) != NATS_OK)
            trace = "-";
        printf("reply %.*s trace %s\n", natsMsg_GetDataLength(reply), natsMsg_GetData(reply), trace);
        natsMsg_Destroy(reply);
    }
    return 0;
}

static int
respond(natsConnection *nc, const char *subject, int count)
{
    natsSubscription *s = NULL;
    CHECK(natsConnection_SubscribeSync(&s, nc, subject));
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("ready\n");
    for (int i = 0; i < count; i++)
    {
        natsMsg *m = NULL;
        natsMsg *answer = NULL;
        char text[512];
        CHECK(natsSubscription_NextMsg(&m, s, WAIT_MS));
        snprintf(text, sizeof(text), "echo %.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
        CHECK(natsMsg_Create(&answer, natsMsg_GetReply(m), NULL, text, (int) strlen(text)));
        const char *trace = NULL;
        if (natsMsgHeader_Get(m, "Trace", &trace) == NATS_OK)
            CHECK(natsMsgHeader_Set(answer, "Trace", trace));
        CHECK(natsConnection_PublishMsg(nc, answer));
        natsMsg_Destroy(answer);
        natsMsg_Destroy(m);
    }
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("answered %d\n", count);
    natsSubscription_Destroy(s);
    return 0;
}

static int
hpub(natsConnection *nc, const char *subject)
{
    natsMsg *m = NULL;
    CHECK(natsMsg_Create(&m, subject, NULL, "21.5", 4));
    CHECK(natsMsgHeader_Set(m, "Site", "north"));
    CHECK(natsMsgHeader_Set(m, "Unit", "C"));
    CHECK(natsMsgHeader_Add(m, "Unit", "K"));
    CHECK(natsConnection_PublishMsg(nc, m));
    natsMsg_Destroy(m);
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("published 1\n");
    return 0;
}

static int
hsub(natsConnection *nc, const char *subject)
{
    natsSubscription *s = NULL;
    natsMsg *m = NULL;
    CHECK(natsConnection_SubscribeSync(&s, nc, subject));
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("ready\n");
    CHECK(natsSubscription_NextMsg(&m, s, WAIT_MS));
    printMsg(m);
    const char **keys = NULL;
    int nkeys = 0;
    CHECK(natsMsgHeader_Keys(m, &keys, &nkeys));
    /* Keys come from a hash map: print them in a fixed order for the test. */
    for (int i = 0; i < nkeys; i++)
        for (int j = i + 1; j < nkeys; j++)
            if (strcmp(keys[j], keys[i]) < 0)
            {
                const char *t = keys[i];
                keys[i] = keys[j];
                keys[j] = t;
            }
    for (int i = 0; i < nkeys; i++)
    {
        const char *first = NULL;
        const char **values = NULL;
        int n = 0;
        CHECK(natsMsgHeader_Get(m, keys[i], &first));
        CHECK(natsMsgHeader_Values(m, keys[i], &values, &n));
        printf("header %s get=%s values=", keys[i], first);
        for (int v = 0; v < n; v++)
            printf("%s%s", v ? "," : "", values[v]);
        printf("\n");
        free((void *) values);
    }
    free((void *) keys);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(s);
    return 0;
}

static int
autounsub(natsConnection *nc, const char *subject, int max)
{
    natsSubscription *s = NULL;
    CHECK(natsConnection_SubscribeSync(&s, nc, subject));
    CHECK(natsSubscription_AutoUnsubscribe(s, max));
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("ready\n");
    for (;;)
    {
        natsMsg *m = NULL;
        natsStatus st = natsSubscription_NextMsg(&m, s, WAIT_MS);
        if (st != NATS_OK)
        {
            printf("status %s\n", statusName(st));
            break;
        }
        printMsg(m);
        natsMsg_Destroy(m);
    }
    printf("valid %s\n", natsSubscription_IsValid(s) ? "true" : "false");
    natsSubscription_Destroy(s);
    /* Still connected until stdin ends: the test checks the server dropped the interest. */
    while (getchar() != EOF)
        ;
    return 0;
}

static int
maxpayload(natsConnection *nc, const char *subject)
{
    int64_t max = natsConnection_GetMaxPayload(nc);
    printf("max_payload %lld\n", (long long) max);
    char *data = calloc((size_t) max + 1, 1);
    if (data == NULL)
        return fail(NATS_NO_MEMORY);
    memset(data, 'x', (size_t) max + 1);
    natsStatus over = natsConnection_Publish(nc, subject, data, (int) max + 1);
    printf("publish %lld: %s\n", (long long) max + 1, statusName(over));
    natsStatus at = natsConnection_Publish(nc, subject, data, (int) max);
    printf("publish %lld: %s\n", (long long) max, statusName(at));
    free(data);
    CHECK(natsConnection_FlushTimeout(nc, WAIT_MS));
    printf("flushed\n");
    return 0;
}

static int
run(natsConnection *nc, const char *scenario, int argc, char **argv)
{
#define NEED(n)                                                               \
    if (argc < (n))                                                           \
    {                                                                         \
        fprintf(stderr, "%s: needs %d arguments\n", scenario, (n));           \
        return 2;                                                             \
    }
    if (strcmp(scenario, "connect") == 0)
    {
        printf("connected\n");
        return 0;
    }
    if (strcmp(scenario, "pub") == 0) { NEED(2); return pub(nc, argv[0], argc - 1, argv + 1); }
    if (strcmp(scenario, "sub") == 0) { NEED(2); return sub(nc, argv[0], NULL, atoi(argv[1])); }
    if (strcmp(scenario, "queue") == 0) { NEED(3); return sub(nc, argv[0], argv[1], atoi(argv[2])); }
    if (strcmp(scenario, "request") == 0) { NEED(2); return request(nc, argv[0], argc - 1, argv + 1); }
    if (strcmp(scenario, "respond") == 0) { NEED(2); return respond(nc, argv[0], atoi(argv[1])); }
    if (strcmp(scenario, "hpub") == 0) { NEED(1); return hpub(nc, argv[0]); }
    if (strcmp(scenario, "hsub") == 0) { NEED(1); return hsub(nc, argv[0]); }
    if (strcmp(scenario, "autounsub") == 0) { NEED(2); return autounsub(nc, argv[0], atoi(argv[1])); }
    if (strcmp(scenario, "maxpayload") == 0) { NEED(1); return maxpayload(nc, argv[0]); }
    fprintf(stderr, "unknown scenario %s\n", scenario);
    return 2;
#undef NEED
}

int
main(int argc, char **argv)
{
    const char *user = NULL;
    const char *password = NULL;
    int opt;
    /* Lines reach the test as they are printed (it waits for `ready`). */
    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt(argc, argv, "u:p:")) != -1)
    {
        if (opt == 'u')
            user = optarg;
        else if (opt == 'p')
            password = optarg;
        else
            return 2;
    }
    if (argc - optind < 2)
    {
        fprintf(stderr, "usage: %s [-u user -p password] <url> <scenario> [args...]\n", argv[0]);
        return 2;
    }
    const char *url = argv[optind];
    const char *scenario = argv[optind + 1];

    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    CHECK(natsOptions_Create(&opts));
    CHECK(natsOptions_SetURL(opts, url));
    CHECK(natsOptions_SetAllowReconnect(opts, false));
    CHECK(natsOptions_SetTimeout(opts, WAIT_MS));
    if (user != NULL)
        CHECK(natsOptions_SetUserInfo(opts, user, password));
    natsStatus s = natsConnection_Connect(&nc, opts);
    natsOptions_Destroy(opts);
    if (s != NATS_OK)
        return fail(s);
    int rc = run(nc, scenario, argc - optind - 2, argv + optind + 2);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
