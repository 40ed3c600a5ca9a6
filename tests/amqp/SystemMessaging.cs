// Why this exists: unmodified System.Messaging code, compiled with Mono's mcs and run through
// Mono's stock RabbitMQ provider, checked against mqemu's AMQP face (tests/integration/amqp_mono.rs
// compiles and runs it). Nothing here knows it talks to mqemu: it is the MSMQ API as .NET code
// uses it.
//
// usage: mono SystemMessaging.exe HOST checks            every check below; "ok NAME" per check
//        mono SystemMessaging.exe HOST send-cross QUEUE   one message for another client to read
//        mono SystemMessaging.exe HOST receive-cross QUEUE LABEL TEXT
//        mono SystemMessaging.exe HOST bench COUNT        transactional sends, then receives
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Messaging;
using System.Text;
using System.Threading;

[Serializable]
public class Order {
    public int Number;
    public string Customer;
}

static class Program {
    static string host;

    static void Check(bool condition, string what) {
        if (!condition)
            throw new Exception("check failed: " + what);
    }

    static string PathOf(string name) {
        return host + "\\private$\\" + name;
    }

    // A queue as an application opens it: created when missing, read with every property.
    static MessageQueue Open(string name, bool transactional) {
        string path = PathOf(name);
        if (!MessageQueue.Exists(path))
            MessageQueue.Create(path, transactional);
        var q = new MessageQueue(path);
        q.Formatter = new XmlMessageFormatter(new Type[] { typeof(string), typeof(Order) });
        q.MessageReadPropertyFilter.SetAll();
        return q;
    }

    static void SendTx(MessageQueue q, Message m) {
        using (var tx = new MessageQueueTransaction()) {
            tx.Begin();
            q.Send(m, tx);
            tx.Commit();
        }
    }

    static Message ReceiveTx(MessageQueue q) {
        using (var tx = new MessageQueueTransaction()) {
            tx.Begin();
            var m = q.Receive(TimeSpan.FromSeconds(5), tx);
            tx.Commit();
            return m;
        }
    }

    // Receive that expects nothing: MSMQ's timeout, as an exception.
    static bool TimesOut(Func<Message> receive) {
        try {
            receive();
            return false;
        } catch (MessageQueueException) {
            return true;
        }
    }

    static string Text(Message m) {
        return (string) m.Body;
    }

    // Mono's MessageQueue.Create stays in the process (the provider declares a queue on the
    // server the first time it is used) and a purge of a queue the server has never seen is
    // AMQP's 404, so a first peek declares it.
    static void Drain(MessageQueue q) {
        TimesOut(() => q.Peek(TimeSpan.FromMilliseconds(10)));
        q.Purge();
    }

    static void AdminCreateExistsPurgeDelete() {
        string path = PathOf("sm_admin");
        MessageQueue.Create(path, true);
        Check(MessageQueue.Exists(path), "Exists after Create");
        var q = Open("sm_admin", true);
        for (int i = 0; i < 3; i++)
            SendTx(q, new Message("purged " + i));
        q.Purge();
        Check(TimesOut(() => q.Receive(TimeSpan.FromMilliseconds(200))), "a purged queue is empty");
        SendTx(q, new Message("still works"));
        Check(Text(ReceiveTx(q)) == "still works", "send after purge");
        MessageQueue.Delete(path);
    }

    static void PropertiesTravel() {
        var q = Open("sm_props", true);
        Drain(q);
        var first = new Message("first");
        first.Label = "order 7";
        first.AppSpecific = 42;
        SendTx(q, first);
        var got = ReceiveTx(q);
        Check(got.Label == "order 7", "label: " + got.Label);
        Check(got.AppSpecific == 42, "app-specific: " + got.AppSpecific);
        Check(Text(got) == "first", "body");
        var reply = new Message("reply");
        reply.CorrelationId = got.Id;
        SendTx(q, reply);
        var r = ReceiveTx(q);
        Check(r.CorrelationId == got.Id, "correlation id " + r.CorrelationId + " vs " + got.Id);
        Check(r.Id != got.Id, "each message has its own id");
    }

    // MSMQ delivers by priority on a non-transactional queue (transactional queues order by
    // transaction, and MSMQ sends to them at priority 0). Mono's provider cannot say that a queue
    // is not transactional (its Create never reaches the server), so the queue is made the way an
    // administrator would: `mqemu queue create '.\private$\sm_prio'` before this runs.
    static void PrioritiesOrderAQueue() {
        var q = Open("sm_prio", false);
        Drain(q);
        var low = new Message("low");
        low.Priority = MessagePriority.Low;
        q.Send(low);
        var high = new Message("high");
        high.Priority = MessagePriority.VeryHigh;
        q.Send(high);
        var a = q.Receive(TimeSpan.FromSeconds(5));
        var b = q.Receive(TimeSpan.FromSeconds(5));
        Check(Text(a) == "high" && a.Priority == MessagePriority.VeryHigh, "VeryHigh first: " + Text(a));
        Check(Text(b) == "low" && b.Priority == MessagePriority.Low, "then Low");
    }

    static void Formatters() {
        var q = Open("sm_fmt", true);
        Drain(q);
        var order = new Order { Number = 7, Customer = "Contoso" };

        var xml = new XmlMessageFormatter(new Type[] { typeof(Order) });
        SendTx(q, new Message(order, xml));
        var m = ReceiveTx(q);
        m.Formatter = xml;
        var o = (Order) m.Body;
        Check(o.Number == 7 && o.Customer == "Contoso", "XmlMessageFormatter");

        var bin = new BinaryMessageFormatter();
        SendTx(q, new Message(order, bin));
        m = ReceiveTx(q);
        m.Formatter = bin;
        o = (Order) m.Body;
        Check(o.Number == 7 && o.Customer == "Contoso", "BinaryMessageFormatter");

        // ActiveX bodies as .NET's ActiveXMessageFormatter writes them (Mono's throws
        // NotImplementedException): a string is UTF-16 with VT_BSTR, an int four bytes with VT_I4.
        var s = new Message();
        s.BodyStream = new MemoryStream(Encoding.Unicode.GetBytes("text"));
        s.BodyType = 8;
        SendTx(q, s);
        var i = new Message();
        i.BodyStream = new MemoryStream(BitConverter.GetBytes(12345));
        i.BodyType = 3;
        SendTx(q, i);
        m = ReceiveTx(q);
        Check(Encoding.Unicode.GetString(Bytes(m)) == "text" && m.BodyType == 8, "ActiveX string, VT_BSTR: " + m.BodyType);
        m = ReceiveTx(q);
        Check(BitConverter.ToInt32(Bytes(m), 0) == 12345 && m.BodyType == 3, "ActiveX int, VT_I4: " + m.BodyType);
    }

    static byte[] Bytes(Message m) {
        var b = new byte[m.BodyStream.Length];
        m.BodyStream.Position = 0;
        m.BodyStream.Read(b, 0, b.Length);
        return b;
    }

    static void TransactionsCommitAndAbort() {
        var q = Open("sm_tx", true);
        Drain(q);
        using (var tx = new MessageQueueTransaction()) {
            tx.Begin();
            q.Send(new Message("a"), tx);
            q.Send(new Message("b"), tx);
            tx.Commit();
        }
        using (var tx = new MessageQueueTransaction()) {
            tx.Begin();
            q.Send(new Message("never"), tx);
            tx.Abort();
        }
        // An aborted receive puts the message back first in line.
        using (var tx = new MessageQueueTransaction()) {
            tx.Begin();
            var m = q.Receive(TimeSpan.FromSeconds(5), tx);
            Check(Text(m) == "a", "a first");
            tx.Abort();
        }
        Check(Text(ReceiveTx(q)) == "a", "the aborted receive's message is first again");
        Check(Text(ReceiveTx(q)) == "b", "then b");
        Check(TimesOut(() => q.Receive(TimeSpan.FromMilliseconds(200))), "the aborted send left nothing");
    }

    static void SingleMessageTransactions() {
        var q = Open("sm_single", true);
        Drain(q);
        q.Send(new Message("one"), MessageQueueTransactionType.Single);
        var m = q.Receive(TimeSpan.FromSeconds(5), MessageQueueTransactionType.Single);
        Check(Text(m) == "one", "Single send and receive");
    }

    static void TimeoutsAndPeek() {
        var q = Open("sm_peek", true);
        Drain(q);
        var watch = Stopwatch.StartNew();
        Check(TimesOut(() => q.Receive(TimeSpan.FromMilliseconds(300))), "receive times out");
        Check(watch.ElapsedMilliseconds >= 250, "the receive waited its timeout: " + watch.ElapsedMilliseconds);
        Check(TimesOut(() => q.Peek(TimeSpan.FromMilliseconds(100))), "peek times out");
        SendTx(q, new Message("peeked"));
        var p1 = q.Peek(TimeSpan.FromSeconds(5));
        var p2 = q.Peek(TimeSpan.FromSeconds(5));
        Check(Text(p1) == "peeked" && p1.Id == p2.Id, "peek leaves the message");
        Check(ReceiveTx(q).Id == p1.Id, "then receive takes it");
    }

    static void ById() {
        var q = Open("sm_byid", true);
        Drain(q);
        SendTx(q, new Message("x"));
        SendTx(q, new Message("y"));
        var all = All(q);
        Check(all.Length == 2, "two messages: " + all.Length);
        string yId = all[1].Id;
        var peeked = q.PeekById(yId);
        Check(Text(peeked) == "y", "PeekById");
        var got = q.ReceiveById(yId, MessageQueueTransactionType.Single);
        Check(Text(got) == "y" && got.Id == yId, "ReceiveById");
        var x = q.Peek(TimeSpan.FromSeconds(5));
        var reply = new Message("about x");
        reply.CorrelationId = x.Id;
        SendTx(q, reply);
        Check(Text(q.PeekByCorrelationId(x.Id)) == "about x", "PeekByCorrelationId");
        var r = q.ReceiveByCorrelationId(x.Id, MessageQueueTransactionType.Single);
        Check(Text(r) == "about x", "ReceiveByCorrelationId");
        Check(Text(ReceiveTx(q)) == "x", "x is left");
    }

    // What MessageQueue.GetAllMessages returns: every message, in order, left in the queue.
    // Mono's own GetAllMessages (and GetMessageEnumerator2) throw NotImplementedException before
    // anything reaches the wire, so this walks the same messages with the enumerator Mono does
    // implement.
    static Message[] All(MessageQueue q) {
        var all = new List<Message>();
        using (var e = q.GetMessageEnumerator()) {
            while (e.MoveNext(TimeSpan.FromMilliseconds(500)))
                all.Add(e.Current);
        }
        return all.ToArray();
    }

    static void AllMessages() {
        var q = Open("sm_all", true);
        Drain(q);
        for (int i = 0; i < 3; i++) {
            var m = new Message("m" + i);
            m.Label = "L" + i;
            SendTx(q, m);
        }
        var all = All(q);
        Check(all.Length == 3, "GetAllMessages sees 3: " + all.Length);
        for (int i = 0; i < 3; i++)
            Check(all[i].Label == "L" + i, "in order: " + all[i].Label);
        for (int i = 0; i < 3; i++)
            Check(Text(ReceiveTx(q)) == "m" + i, "and leaves them, in order");
    }

    static void Asynchronous() {
        var q = Open("sm_async", true);
        Drain(q);
        var peek = q.BeginPeek(TimeSpan.FromSeconds(10));
        Thread.Sleep(200);
        SendTx(Open("sm_async", true), new Message("later"));
        // Mono's EndPeek and EndReceive return what has arrived so far rather than waiting as
        // .NET's do, so the program waits on the handle first (harmless on .NET).
        peek.AsyncWaitHandle.WaitOne();
        var p = q.EndPeek(peek);
        Check(p != null && Text(p) == "later", "BeginPeek completes when a message arrives");
        var receive = q.BeginReceive(TimeSpan.FromSeconds(10));
        receive.AsyncWaitHandle.WaitOne();
        var r = q.EndReceive(receive);
        Check(r != null && Text(r) == "later", "BeginReceive takes it");
        // A completion callback (Mono does not raise MessageQueue.ReceiveCompleted).
        var done = new ManualResetEvent(false);
        Message fromCallback = null;
        q.BeginReceive(TimeSpan.FromSeconds(10), null, ar => {
            fromCallback = q.EndReceive(ar);
            done.Set();
        });
        SendTx(q, new Message("callback"));
        Check(done.WaitOne(10000) && Text(fromCallback) == "callback", "BeginReceive's callback");
    }

    static int Checks() {
        var checks = new List<KeyValuePair<string, Action>> {
            new KeyValuePair<string, Action>("create/exists/purge/delete", AdminCreateExistsPurgeDelete),
            new KeyValuePair<string, Action>("label, correlation id, app-specific", PropertiesTravel),
            new KeyValuePair<string, Action>("priorities", PrioritiesOrderAQueue),
            new KeyValuePair<string, Action>("formatters", Formatters),
            new KeyValuePair<string, Action>("MessageQueueTransaction commit and abort", TransactionsCommitAndAbort),
            new KeyValuePair<string, Action>("MessageQueueTransactionType.Single", SingleMessageTransactions),
            new KeyValuePair<string, Action>("timeouts and peek", TimeoutsAndPeek),
            new KeyValuePair<string, Action>("by id and correlation id", ById),
            new KeyValuePair<string, Action>("GetAllMessages", AllMessages),
            new KeyValuePair<string, Action>("BeginReceive/BeginPeek", Asynchronous),
        };
        int failed = 0;
        foreach (var c in checks) {
            try {
                c.Value();
                Console.WriteLine("ok " + c.Key);
            } catch (Exception e) {
                failed++;
                Console.WriteLine("FAILED " + c.Key + ": " + e);
            }
        }
        return failed == 0 ? 0 : 1;
    }

    static string Hex(byte[] b) {
        var s = new StringBuilder();
        foreach (var x in b)
            s.Append(x.ToString("x2"));
        return s.ToString();
    }

    // Mono's provider keeps its pooled connections open on foreground threads, so a program that
    // returns from Main never ends (against RabbitMQ as against mqemu); it exits explicitly.
    static void Main(string[] args) {
        Environment.Exit(Run(args));
    }

    static int Run(string[] args) {
        host = args[0];
        switch (args[1]) {
        case "checks":
            return Checks();
        case "send-cross": {
            var q = Open(args[2], true);
            var m = new Message("from System.Messaging");
            m.Label = "mono label";
            m.AppSpecific = 5;
            SendTx(q, m);
            Console.WriteLine("body " + Hex(Bytes(m)));
            return 0;
        }
        case "receive-cross": {
            var q = Open(args[2], true);
            var m = ReceiveTx(q);
            Check(m.Label == args[3], "label " + m.Label);
            Check(Text(m) == args[4], "body " + Text(m));
            Console.WriteLine("ok received " + m.Label + " " + m.CorrelationId);
            return 0;
        }
        case "bench": {
            int n = int.Parse(args[2]);
            var q = Open("sm_bench", true);
            Drain(q);
            var body = new string('x', 1000);
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
                SendTx(q, new Message(body));
            double send = watch.Elapsed.TotalSeconds;
            watch.Restart();
            for (int i = 0; i < n; i++)
                ReceiveTx(q);
            double receive = watch.Elapsed.TotalSeconds;
            Console.WriteLine(String.Format("bench {0} messages: send {1:F0}/s receive {2:F0}/s total {3:F2} s",
                n, n / send, n / receive, send + receive));
            return 0;
        }
        }
        Console.Error.WriteLine("unknown mode " + args[1]);
        return 2;
    }
}
